//! The systemd notify protocol against a socket standing in for systemd: READY=1
//! once the daemon is up, WATCHDOG=1 pings, STOPPING=1 at shutdown. Its own test
//! binary, since `NOTIFY_SOCKET` is process-wide.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use cronbyte::config::{self, Format};
use cronbyte::daemon::Daemon;
use cronbyte::emulator::{Emulator, EmulatorOptions};
use tokio_util::sync::CancellationToken;

fn received(socket: &UnixDatagram) -> Vec<String> {
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buffer) {
        messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    messages
}

#[tokio::test]
async fn the_daemon_speaks_the_notify_protocol_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    // SAFETY: this binary runs one test, so no other thread reads the environment meanwhile.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &socket_path);
        std::env::set_var("WATCHDOG_USEC", "400000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    }

    let emulator = Emulator::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorOptions::default(),
    )
    .await
    .unwrap();
    let text = format!(
        "[airbyte]\nbase_url = \"{}\"\n[store]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
        emulator.config_api_base(),
        dir.path().join("history.db").display()
    );
    let daemon = Daemon::build(config::from_str(&text, Format::Toml).unwrap())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(daemon.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let running = received(&socket);
    assert!(running.iter().any(|m| m.contains("READY=1")), "{running:?}");
    let pings = running.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 2,
        "the watchdog is pinged every 200 ms: {running:?}"
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
    let stopping = received(&socket);
    assert!(
        stopping.iter().any(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
}
