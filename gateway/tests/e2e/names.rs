//! Names, tokens and placement (issue 13, items 6 to 8): a private channel never opens
//! without a token that lists it, whatever its name looks like; a client cannot choose its
//! core with a forged `Last-Event-ID`; percent-decoding does not change a stream's family;
//! a half-closed client keeps its stream; tokens get a little clock-skew leeway.
use std::time::Duration;

use crate::common::*;

const SEC: Duration = Duration::from_secs(1);

fn get_status(gw: &Gateway, path: &str) -> (u16, String) {
    let r = request(
        gw.addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let e = if r.status == 200 {
        String::new()
    } else {
        r.error()
    };
    (r.status, e)
}

#[test]
fn a_private_channel_whose_player_id_holds_broadcast_needs_its_token() {
    let gw = Gateway::start(&[]);
    // An e-mail-like player id that contains `_broadcast_`.
    let private = "8mQhEnuznUe01IsGOE4mPw_user_jane_broadcast_doe@example.com";
    let enc = private.replace('@', "%40");
    let (status, error) = get_status(&gw, &format!("/subscribe?channel={enc}"));
    assert_eq!((status, error.as_str()), (401, "missing token"));
    let other = channel_token(&["8mQhEnuznUe01IsGOE4mPw_user_someone"]);
    let (status, _) = get_status(&gw, &format!("/subscribe?channel={enc}&token={other}"));
    assert_eq!(status, 403);
    // With its token it opens, as a private channel, and gets what is published on it.
    let token = channel_token(&[private]);
    let mut s = Sse::open(
        gw.addr,
        &format!("/subscribe?channel={enc}&token={token}"),
        "",
    );
    assert_eq!(s.status(), 200, "{}", s.head);
    assert!(eventually(5 * SEC, || gw
        .stat("connections.per_route.jackpot_user")
        == 1));
    assert_eq!(gw.stat("connections.per_route.jackpot"), 0);
    let won = format!("{{\"reason\":\"jackpot_won\",\"channel\":\"{private}\"}}");
    assert_eq!(gw.publish(private, &won).status, 202);
    let ev = s.next_event(5 * SEC).expect("the private event");
    assert_eq!(ev.data, won);
}
