//! The service under load: its own binary, `serve` on a free port over the scratch
//! database, stopped with SIGTERM as a deployment stops it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use app::db::DatabaseUrl;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// A running `serve`; killed if dropped before [`Server::stop`] (an interrupted bench).
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Statements slower than this are warned about by the server: a day, the most the setting
/// takes. Under load every statement waits its turn for the two cores, and a warning per
/// wait would bury the table; the bench reports latency itself.
const SLOW_QUERY_MS: &str = "86400000";

impl Server {
    /// Starts `bin serve` on 127.0.0.1, port 0, over `url` with a pool of `pool_size`
    /// connections, and waits until `/readyz` answers 200.
    pub async fn start(bin: &Path, url: &DatabaseUrl, pool_size: usize) -> anyhow::Result<Server> {
        // The scratch database through the environment (a password never on a command line),
        // and everything else that could point it elsewhere set too, so that no .env fills it
        // in; run from the temporary directory, where no .env is.
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(std::env::temp_dir())
            .env("DATABASE_URL", url.expose())
            .env("DATABASE_DIRECT_URL", url.expose())
            .env("DATABASE_REPLICA_URLS", "")
            .env("DATABASE_POOL_SIZE", pool_size.to_string())
            .env("DATABASE_SLOW_QUERY_MS", SLOW_QUERY_MS)
            .env("RUST_LOG", log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok(addr.trim().parse::<SocketAddr>()?);
                }
            }
            bail!("serve ended before it listened (its errors are above)")
        })
        .await
        .context("serve did not listen within 60 s")??;
        // What it prints later (its stop) goes on, to stderr; a full pipe would block it.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                app::errln!("serve: {line}");
            }
        });
        let server = Server { child, addr };
        server.ready().await?;
        Ok(server)
    }

    /// Waits (up to 30 s) for `GET /readyz` to answer 200.
    async fn ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match status(self.addr, "/readyz").await {
                Ok(200) => return Ok(()),
                _ if Instant::now() > deadline => {
                    bail!("serve on {} is not ready after 30 s", self.addr)
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Stops it with SIGTERM and waits for it to exit: it must exit 0, as after any stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("serve already exited")?;
        // SAFETY: kill(2) with a pid of our own child, which has not been waited for.
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
            bail!("SIGTERM to serve: {}", std::io::Error::last_os_error());
        }
        // Its grace period (10 s) and the cancels' (2 s), and some.
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .context("serve did not exit within 20 s of SIGTERM")??;
        anyhow::ensure!(status.success(), "serve exited with {status} after SIGTERM");
        Ok(())
    }
}

/// The server's RUST_LOG: errors only, unless RUST_LOG says otherwise (e.g.
/// `app::instrument=debug` to see each request's statements). wrk ends every run by closing
/// its connections with requests in flight, and each of those is a warning by design (the
/// request given up, its statement cancelled); a request that fails while a run counts is
/// an error of wrk's, which stops the bench.
fn log_filter() -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "error".into())
}

/// The status of `GET path` on `addr`: HTTP/1.1 written by hand, which is all a readiness
/// poll needs.
async fn status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    // "HTTP/1.1 200"
    let code = std::str::from_utf8(&head[9..12])?.parse()?;
    Ok(code)
}
