//! Route families defined in the config file's `[[routes]]` array: a platform adds its own
//! streams (paths, channel templates, auth, event naming, keep-alive) without a rebuild.
//!
//! Each row is checked before the node starts; a bad row stops start-up with a message that
//! names the row and the field. Custom families come after the built-in ones, so a custom
//! row can never change how an existing client is served.
use std::time::Duration;

use serde::Deserialize;

use crate::route::table::{
    AuthRule, EventName, Family, Greeting, KeepaliveFormat, PayloadRule, Placement, RouteTable,
    SlowPolicy, Template,
};

/// One `[[routes]]` row as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    /// Stats and metrics label.
    name: String,
    /// Request path template, `{param}` capturing one segment.
    path: String,
    /// Channel template; holes are filled from path parameters and, for `player_token`,
    /// `brand_id` and `player_id`.
    channel: String,
    #[serde(default = "public")]
    auth: AuthRule,
    #[serde(default = "any")]
    payload: PayloadRule,
    /// Fixed `event:` name; absent: unnamed (or the payload's `type` for `typed_event`).
    event: Option<String>,
    #[serde(default = "heartbeat")]
    keepalive: KeepaliveFormat,
    /// `15s`, `500ms`...; default 15 s.
    keepalive_period: Option<String>,
    #[serde(default = "no_greeting")]
    greeting: Greeting,
    #[serde(default = "local")]
    placement: Placement,
    #[serde(default = "cut")]
    slow: SlowPolicy,
    channel_param: Option<String>,
    channel_list_param: Option<String>,
    #[serde(default = "yes")]
    named_system_events: bool,
    /// Whether each channel has one or a few streams (subscribed per channel in
    /// `SSE_REDIS_SUBSCRIBE=channel` mode); absent: whether `placement = "owner"`.
    unicast: Option<bool>,
}

fn public() -> AuthRule {
    AuthRule::Public
}
fn any() -> PayloadRule {
    PayloadRule::Any
}
fn heartbeat() -> KeepaliveFormat {
    KeepaliveFormat::Heartbeat
}
fn no_greeting() -> Greeting {
    Greeting::None
}
fn local() -> Placement {
    Placement::Local
}
fn cut() -> SlowPolicy {
    SlowPolicy::Cut
}
fn yes() -> bool {
    true
}

impl RouteTable {
    /// The built-in families followed by the `[[routes]]` of the config file, checked.
    pub fn with_custom(routes_toml: Option<&toml::Value>) -> Result<RouteTable, String> {
        let mut table = RouteTable::builtin();
        if let Some(v) = routes_toml {
            append(&mut table, v)?;
        }
        Ok(table)
    }
}

/// Parses `[[routes]]` and appends its families to `table`; the error names the row.
pub fn append(table: &mut RouteTable, value: &toml::Value) -> Result<(), String> {
    let rows = value
        .as_array()
        .ok_or("`routes` must be an array of tables ([[routes]])")?;
    for (i, v) in rows.iter().enumerate() {
        let label = v.get("name").and_then(toml::Value::as_str).map_or_else(
            || format!("[[routes]] #{}", i + 1),
            |n| format!("route {n:?}"),
        );
        let row: Row = v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("{label}: {}", e.message()))?;
        let family = check(table, row).map_err(|e| format!("{label}: {e}"))?;
        table.families.push(family);
    }
    Ok(())
}

fn check(table: &RouteTable, row: Row) -> Result<Family, String> {
    if row.name.is_empty()
        || !row
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err("name must be letters, digits and `_` (it is a metrics label)".into());
    }
    if table.families.iter().any(|f| f.name == row.name) {
        return Err("a route family of that name exists already".into());
    }
    let path = Template::parse(&row.path)
        .filter(|_| row.path.starts_with('/'))
        .ok_or("path must start with `/` and use `{name}` holes with text between them")?;
    if let Some(api) = crate::route::table::api_paths().find(|a| path.capture(a).is_some()) {
        return Err(format!(
            "path {} would take over the API route {api}",
            row.path
        ));
    }
    if table.families.iter().any(|f| f.path == path) {
        return Err(format!(
            "path {} is served by an existing family already",
            row.path
        ));
    }
    let channel = Template::parse(&row.channel)
        .ok_or("channel must use `{name}` holes with text between them")?;
    let sample = channel.render(|_| Some("x".into())).unwrap_or_default();
    if let Some(f) = table.family_of_channel(&sample) {
        return Err(format!(
            "channel {} overlaps family {:?} (channel {sample:?} would be theirs)",
            row.channel, table.families[f].name
        ));
    }
    let mut known: Vec<&str> = path.holes().collect();
    if row.auth == AuthRule::PlayerToken {
        known.extend(["brand_id", "player_id"]);
    }
    let free = match (&row.channel_param, &row.channel_list_param) {
        (Some(_), Some(_)) => {
            return Err("set channel_param or channel_list_param, not both".into());
        }
        (Some(_), None) => None,
        (None, Some(_)) => {
            let holes: Vec<&str> = channel.holes().collect();
            if holes.len() != 1 {
                return Err("with channel_list_param the channel needs exactly one hole".into());
            }
            Some(holes[0])
        }
        (None, None) => None,
    };
    if row.channel_param.is_none() {
        if let Some(h) = channel
            .holes()
            .find(|h| !known.contains(h) && Some(*h) != free)
        {
            return Err(format!(
                "channel hole {{{h}}} is not a path parameter{}",
                if row.auth == AuthRule::PlayerToken {
                    ""
                } else {
                    " (brand_id/player_id come only with auth = \"player_token\")"
                }
            ));
        }
    }
    if row.channel_list_param.is_some() && row.placement == Placement::Owner {
        return Err(
            "a channel_list_param stream spans channels, so placement must be \"local\"".into(),
        );
    }
    let unicast = row.unicast.unwrap_or(row.placement == Placement::Owner);
    if unicast && row.channel_list_param.is_some() {
        return Err(
            "a unicast family is subscribed per channel, so it cannot take channel_list_param (`all` names no channel)".into(),
        );
    }
    if row.channel_list_param.is_some() && row.greeting == Greeting::Latest {
        return Err("greeting = \"latest\" needs a single channel, not channel_list_param".into());
    }
    if row.auth == AuthRule::ChannelToken && row.channel_param.is_none() {
        return Err(
            "auth = \"channel_token\" needs channel_param (the channel the token lists)".into(),
        );
    }
    let event_name = match (row.payload, row.event) {
        (PayloadRule::TypedEvent, None) => EventName::FromPayload,
        (PayloadRule::TypedEvent, Some(_)) => {
            return Err(
                "payload = \"typed_event\" names events by their type; drop `event`".into(),
            );
        }
        (_, None) => EventName::Unnamed,
        (_, Some(n)) if n.is_empty() || n.len() > 200 || n.contains(['\r', '\n']) => {
            return Err("event must be 1 to 200 bytes without line breaks".into());
        }
        (_, Some(n)) => EventName::Fixed(n),
    };
    let keepalive_period = match &row.keepalive_period {
        None => Duration::from_secs(15),
        Some(t) => crate::util::duration::parse(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or("keepalive_period must be a positive duration such as 15s or 500ms")?,
    };
    Ok(Family {
        name: row.name,
        path,
        auth: row.auth,
        channel,
        payload: row.payload,
        event_name,
        keepalive: row.keepalive,
        keepalive_period,
        greeting: row.greeting,
        placement: row.placement,
        slow: row.slow,
        channel_param: row.channel_param,
        channel_list_param: row.channel_list_param,
        named_system_events: row.named_system_events,
        topic_api: false,
        unicast,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RouteTable, String> {
        let v: toml::Table = toml::from_str(text).unwrap();
        RouteTable::with_custom(v.get("routes"))
    }

    #[test]
    fn a_full_row_becomes_a_family() {
        let t = load(
            r#"
            [[routes]]
            name = "orders"
            path = "/orders/{shop}"
            channel = "orders:{shop}"
            event = "order"
            keepalive_period = "20s"
            slow = "conflate"
            "#,
        )
        .unwrap();
        let f = t.families.last().unwrap();
        assert_eq!(f.name, "orders");
        assert_eq!(f.event_name, EventName::Fixed("order".into()));
        assert_eq!(f.keepalive_period, Duration::from_secs(20));
        assert_eq!(f.slow, SlowPolicy::Conflate);
        assert_eq!(f.auth, AuthRule::Public);
        assert_eq!(t.family_of_channel("orders:7"), Some(t.families.len() - 1));
        // Unicast follows owner placement unless the row says otherwise.
        assert!(!f.unicast);
        let t = load(
            r#"
            [[routes]]
            name = "inbox"
            path = "/inbox/{user}"
            channel = "inbox:{user}"
            placement = "owner"
            [[routes]]
            name = "desk"
            path = "/desk/{user}"
            channel = "desk:{user}"
            unicast = true
            "#,
        )
        .unwrap();
        let unicast: Vec<bool> = t.families.iter().rev().take(2).map(|f| f.unicast).collect();
        assert_eq!(unicast, [true, true]);
    }

    #[test]
    fn bad_rows_name_the_row_and_the_problem() {
        let cases: &[(&str, &str)] = &[
            (
                r#"name = "x"
                path = "/x"
                channel = "c:{t}"
                channel_list_param = "t"
                unicast = true"#,
                "cannot take channel_list_param",
            ),
            (
                r#"name = "x"
                path = "/x"
                channel = "c:{a}""#,
                "channel hole {a} is not a path parameter",
            ),
            (
                r#"name = "player"
                path = "/x"
                channel = "c""#,
                "exists already",
            ),
            (
                r#"name = "x"
                path = "/sse"
                channel = "c""#,
                "served by an existing family",
            ),
            (
                r#"name = "x"
                path = "/x/{a}"
                channel = "stream:{a}""#,
                "overlaps family \"game\"",
            ),
            (
                r#"name = "x"
                path = "x"
                channel = "c""#,
                "path must start with",
            ),
            (
                r#"name = "x"
                path = "/healthz"
                channel = "c""#,
                "take over the API route /healthz",
            ),
            (
                r#"name = "x"
                path = "/x"
                channel = "c"
                auth = "magic""#,
                "unknown variant `magic`",
            ),
            (
                r#"name = "x"
                path = "/x"
                channel = "c"
                colour = 1"#,
                "unknown field `colour`",
            ),
            (
                r#"name = "x"
                path = "/x"
                channel = "c:{t}"
                channel_list_param = "t"
                payload = "typed_event"
                event = "e""#,
                "drop `event`",
            ),
            (
                r#"name = "x"
                path = "/x"
                channel = "c"
                keepalive_period = "0s""#,
                "positive duration",
            ),
            (
                r#"name = "x y"
                path = "/x"
                channel = "c""#,
                "metrics label",
            ),
        ];
        for (row, want) in cases {
            let err = load(&format!("[[routes]]\n{row}")).unwrap_err();
            assert!(err.contains(want), "{row}: {err}");
            assert!(err.starts_with("route "), "{err}");
        }
        assert!(load("routes = 1").unwrap_err().contains("array of tables"));
    }
}
