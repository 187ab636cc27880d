//! The other side of the ops surface, for `rdsconn proxy wait` and
//! `rdsconn proxy shutdown`: ask a running proxy over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Category, Error, Result};

/// `rdsconn proxy wait`: polls `/startup` until it answers 200.
pub(crate) async fn wait_started(addr: SocketAddr, max: Duration) -> Result<()> {
    let url = format!("http://{addr}/startup");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| Error::new(Category::Runtime, e))?;
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let last = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("{url} answered {}", r.status()),
            Err(e) => crate::error::error_line(&e),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::new(
                Category::Network,
                anyhow::anyhow!(
                    "the proxy did not start within {}: {last}",
                    humantime::format_duration(max)
                ),
            )
            .with_hint("is the proxy running with --health-check on that --http-port?"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rdsconn proxy shutdown`: `POST /quitquitquit` on the admin port.
pub(crate) async fn quit(admin_port: u16) -> Result<()> {
    let url = format!("http://127.0.0.1:{admin_port}/quitquitquit");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::new(Category::Runtime, e))?;
    match client.post(&url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(Error::new(
            Category::Network,
            anyhow::anyhow!("{url} answered {}", r.status()),
        )),
        Err(e) => Err(Error::new(Category::Network, e)
            .context(format!("asking the proxy to shut down at {url}"))
            .with_hint("is the proxy running with --quitquitquit on that --admin-port?")),
    }
}
