//! Persistent reservations from a script (SPC-4 §6.15, §6.16), over one
//! iSCSI session of the test initiator, as `sg_persist` does through a
//! kernel initiator (there is none on these machines):
//!
//! ```text
//! prtool --portal ADDR --target IQN [--lun 0] register KEY
//! prtool --portal ADDR --target IQN [--lun 0] reserve KEY TYPE
//! prtool --portal ADDR --target IQN [--lun 0] read-keys
//! prtool --portal ADDR --target IQN [--lun 0] read-reservation
//! prtool --portal ADDR --target IQN [--lun 0] clear KEY
//! ```
//!
//! `clear` registers KEY for this session (REGISTER AND IGNORE EXISTING
//! KEY), then removes every registration and the reservation (CLEAR).
//!
//! KEY is hexadecimal; TYPE is the PERSISTENT RESERVATION TYPE (1 Write
//! Exclusive, 3 Exclusive Access, 5/6 registrants only, 7/8 all
//! registrants). Prints one line; exits 1 if the target answered anything
//! but GOOD.

use std::net::SocketAddr;
use std::process::ExitCode;

use target_engine::testkit::initiator::{CmdResult, Initiator, LoginOpts, INITIATOR};

fn pr_out(service_action: u8, pr_type: u8, key: u64, service_action_key: u64) -> ([u8; 10], Vec<u8>) {
    let mut params = vec![0u8; 24];
    params[0..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&service_action_key.to_be_bytes());
    ([0x5f, service_action, pr_type, 0, 0, 0, 0, 0, 24, 0], params)
}

fn pr_in(service_action: u8) -> [u8; 10] {
    [0x5e, service_action, 0, 0, 0, 0, 0, 0x10, 0, 0]
}

fn key(arg: Option<String>) -> u64 {
    let text = arg.expect("a KEY (hexadecimal)");
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("KEY is hexadecimal")
}

fn failed(what: &str, r: &CmdResult) -> ExitCode {
    let sense = if r.sense.len() >= 14 {
        format!(" (sense {:x}/{:02x}/{:02x})", r.sense[2] & 0x0f, r.sense[12], r.sense[13])
    } else {
        String::new()
    };
    println!("{what}: status {:#04x}{sense}", r.status);
    ExitCode::FAILURE
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut portal: Option<SocketAddr> = None;
    let mut target = None;
    let mut lun = 0u64;
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--portal" => portal = Some(it.next().expect("--portal ADDR").parse().expect("--portal ADDR")),
            "--target" => target = it.next(),
            "--lun" => lun = it.next().expect("--lun N").parse().expect("--lun N"),
            _ => rest.push(a),
        }
    }
    let (Some(portal), Some(target)) = (portal, target) else {
        eprintln!("usage: prtool --portal ADDR --target IQN [--lun N] register KEY | reserve KEY TYPE | read-keys | read-reservation | clear KEY");
        return ExitCode::from(2);
    };
    let mut i = Initiator::connect(portal).await;
    let o = LoginOpts { initiator: INITIATOR, target: Some(&target), ..Default::default() };
    if let Err(e) = i.login(&o).await {
        println!("login refused: {e:?}");
        return ExitCode::FAILURE;
    }
    // The first command takes the power-on unit attention.
    let _ = i.command_ok(lun, &[0u8; 6], 0, &[]).await;
    let mut args = rest.into_iter();
    let action = args.next().unwrap_or_default();
    match action.as_str() {
        "register" => {
            let k = key(args.next());
            let (cdb, params) = pr_out(0x00, 0, 0, k);
            let r = i.command_ok(lun, &cdb, 0, &params).await;
            if r.status != 0 {
                return failed("register", &r);
            }
            println!("registered key {k:#x}");
        }
        "reserve" => {
            let k = key(args.next());
            let t: u8 = args.next().expect("a TYPE").parse().expect("TYPE is a number");
            let (cdb, params) = pr_out(0x01, t, k, 0);
            let r = i.command_ok(lun, &cdb, 0, &params).await;
            if r.status != 0 {
                return failed("reserve", &r);
            }
            println!("reserved with key {k:#x}, type {t}");
        }
        "clear" => {
            let k = key(args.next());
            let (cdb, params) = pr_out(0x06, 0, 0, k);
            let r = i.command_ok(lun, &cdb, 0, &params).await;
            if r.status != 0 {
                return failed("register and ignore existing key", &r);
            }
            let (cdb, params) = pr_out(0x03, 0, k, 0);
            let r = i.command_ok(lun, &cdb, 0, &params).await;
            if r.status != 0 {
                return failed("clear", &r);
            }
            println!("cleared every registration and the reservation");
        }
        "read-keys" => {
            let r = i.command_ok(lun, &pr_in(0x00), 0x1000, &[]).await;
            if r.status != 0 || r.data.len() < 8 {
                return failed("read-keys", &r);
            }
            let generation = u32::from_be_bytes(r.data[0..4].try_into().unwrap());
            let keys: Vec<String> = r.data[8..]
                .chunks_exact(8)
                .map(|c| format!("{:#x}", u64::from_be_bytes(c.try_into().unwrap())))
                .collect();
            println!("generation {generation}, keys [{}]", keys.join(", "));
        }
        "read-reservation" => {
            let r = i.command_ok(lun, &pr_in(0x01), 0x1000, &[]).await;
            if r.status != 0 || r.data.len() < 8 {
                return failed("read-reservation", &r);
            }
            let generation = u32::from_be_bytes(r.data[0..4].try_into().unwrap());
            let len = u32::from_be_bytes(r.data[4..8].try_into().unwrap());
            if len >= 16 && r.data.len() >= 24 {
                let k = u64::from_be_bytes(r.data[8..16].try_into().unwrap());
                println!("generation {generation}, reservation key {k:#x}, type {}", r.data[21] & 0x0f);
            } else {
                println!("generation {generation}, no reservation");
            }
        }
        other => {
            eprintln!("unknown action {other:?}");
            return ExitCode::from(2);
        }
    }
    let _ = i.logout().await;
    ExitCode::SUCCESS
}
