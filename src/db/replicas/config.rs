//! [`ReplicaConfig`]: the replicas and the router's bounds, from the environment or code,
//! each range-checked by name.

use std::time::Duration;

use crate::Result;
use crate::db::DatabaseUrl;
use crate::settings;

/// Replica settings, read from the environment (and `.env`).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Replicas to read from (`DATABASE_REPLICA_URLS`, comma-separated; none by default).
    pub urls: Vec<DatabaseUrl>,
    /// A replica further behind is skipped (`DATABASE_REPLICA_MAX_LAG_MS`, default 1000).
    pub max_lag: Duration,
    /// How long [`Router::read_after`](super::Router::read_after) waits for a replica to
    /// catch up before it reads from the primary (`DATABASE_REPLICA_WAIT_MS`, default 200).
    pub wait: Duration,
    /// How long a replica that failed, lagged or was promoted is left out before it is
    /// tried again (`DATABASE_REPLICA_RETRY_MS`, default 5000).
    pub retry_after: Duration,
    /// The most that choosing a replica may add to a read, connection and checks included
    /// (`DATABASE_REPLICA_TIMEOUT_MS`, default 1000): a frozen replica costs this once, then
    /// it is left out.
    pub timeout: Duration,
}

impl ReplicaConfig {
    /// Reads `DATABASE_REPLICA_URLS`, `DATABASE_REPLICA_MAX_LAG_MS`,
    /// `DATABASE_REPLICA_WAIT_MS`, `DATABASE_REPLICA_RETRY_MS` and
    /// `DATABASE_REPLICA_TIMEOUT_MS`.
    pub fn from_env() -> Result<Self> {
        let urls = settings::replica_urls()?;
        let urls = urls.iter().map(|u| DatabaseUrl::parse(u));
        let mut config = ReplicaConfig::new(urls.collect::<Result<_>>()?);
        let ms = Duration::from_millis;
        if let Some(n) = settings::REPLICA_MAX_LAG_MS.read()? {
            config.max_lag = ms(n);
        }
        if let Some(n) = settings::REPLICA_WAIT_MS.read()? {
            config.wait = ms(n);
        }
        if let Some(n) = settings::REPLICA_RETRY_MS.read()? {
            config.retry_after = ms(n);
        }
        if let Some(n) = settings::REPLICA_TIMEOUT_MS.read()? {
            config.timeout = ms(n);
        }
        Ok(config)
    }

    /// Refuses bounds outside their ranges, as [`ReplicaConfig::from_env`] does: a config
    /// built in code passes the same checks in [`Router::new`](super::Router::new).
    pub(super) fn check(&self) -> Result<()> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        settings::REPLICA_MAX_LAG_MS.check(ms(self.max_lag))?;
        settings::REPLICA_WAIT_MS.check(ms(self.wait))?;
        settings::REPLICA_RETRY_MS.check(ms(self.retry_after))?;
        settings::REPLICA_TIMEOUT_MS.check(ms(self.timeout))?;
        Ok(())
    }

    /// These replicas, with the default bounds.
    pub fn new(urls: Vec<DatabaseUrl>) -> Self {
        ReplicaConfig {
            urls,
            max_lag: Duration::from_millis(settings::REPLICA_MAX_LAG_MS.default),
            wait: Duration::from_millis(settings::REPLICA_WAIT_MS.default),
            retry_after: Duration::from_millis(settings::REPLICA_RETRY_MS.default),
            timeout: Duration::from_millis(settings::REPLICA_TIMEOUT_MS.default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbConfig;
    use crate::db::replicas::Router;

    /// Bounds set in code pass the same ranges as the environment's: a Duration::MAX
    /// would overflow `Instant` arithmetic mid-request.
    #[test]
    fn bounds_out_of_range_are_refused_by_name() {
        let url = DatabaseUrl::parse("postgres://app@127.0.0.1:1/db").unwrap();
        let primary = DbConfig::new(url.clone());
        type Spoil = fn(&mut ReplicaConfig);
        let cases: [(&str, Spoil); 4] = [
            ("DATABASE_REPLICA_RETRY_MS", |c| {
                c.retry_after = Duration::MAX
            }),
            ("DATABASE_REPLICA_MAX_LAG_MS", |c| {
                c.max_lag = Duration::ZERO
            }),
            ("DATABASE_REPLICA_WAIT_MS", |c| {
                c.wait = Duration::from_secs(3600)
            }),
            ("DATABASE_REPLICA_TIMEOUT_MS", |c| {
                c.timeout = Duration::ZERO
            }),
        ];
        for (name, spoil) in cases {
            let mut config = ReplicaConfig::new(vec![url.clone()]);
            spoil(&mut config);
            let err = Router::new(&primary, config).err().expect(name).to_string();
            assert!(err.contains(name), "{err}");
        }
        Router::new(&primary, ReplicaConfig::new(vec![url])).unwrap();
    }
}
