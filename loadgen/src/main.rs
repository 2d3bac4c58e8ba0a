//! loadgen's command line: `loadgen SCENARIO [options]` runs a scenario; `loadgen worker SPEC`
//! is how the parent starts its worker processes.
use loadgen::opts::{Opts, USAGE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let spec = args.get(1).map(String::as_str).unwrap_or("");
        std::process::exit(loadgen::worker::main(spec));
    }
    let o = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    std::process::exit(loadgen::coord::run(o));
}
