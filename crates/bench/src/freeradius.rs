//! FreeRADIUS 3 as the benchmark's reference: PAP from a users file, nothing else (the
//! configuration is tests/peers/freeradius/pap-bench.conf).

use crate::radius_load::{SECRET, exchange};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CONF: &str = include_str!("../../../tests/peers/freeradius/pap-bench.conf");

pub struct FreeRadius {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl FreeRadius {
    /// Starts FreeRADIUS with users `u0…u<n-1>` (password `p<i>`) and waits until it answers.
    pub fn start(users: u64, _concurrency: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("radiusd.conf"), CONF)?;
        let mut file = String::with_capacity(users as usize * 40);
        for i in 0..users {
            let _ = writeln!(file, "u{i} Cleartext-Password := \"p{i}\"");
        }
        std::fs::write(dir.path().join("users"), file)?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("freeradius")
            .args(["-f", "-d"])
            .arg(dir.path())
            .env("FR_LISTEN_PORT", port.to_string())
            .env("FR_CLIENT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start freeradius (Debian package freeradius)")?;
        let fr = FreeRadius {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let rt = tokio::runtime::Handle::current();
        let addr = fr.addr;
        let ready = std::thread::spawn(move || {
            rt.block_on(async move {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
                socket.connect(addr).await.ok()?;
                for i in 0..100u8 {
                    let answer = tokio::time::timeout(
                        Duration::from_millis(300),
                        exchange(&socket, i, [i; 16], "u0", "p0"),
                    )
                    .await;
                    if let Ok(Some(code)) = answer {
                        return Some(code);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            })
        })
        .join()
        .ok()
        .flatten();
        match ready {
            Some(c) if c == tessera_radius_proto::Code::ACCESS_ACCEPT => Ok(fr),
            Some(c) => bail!("FreeRADIUS answered {c} to a valid PAP request"),
            None => bail!("FreeRADIUS did not answer"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
