//! Whether a URL leads to a whole server session or through a transaction pooler, where
//! session state (a migration lock, a prepared statement) lands on a session other clients
//! share.

use std::time::Duration;

use super::instrument::traced;
use super::{DatabaseUrl, connect_client, connect_timeout, driver_error};
use crate::{Error, Result};

/// Refuses `url` when it leads through a transaction pooler, where a session setting or a
/// session lock lands on a server session that other clients then share: for migrations,
/// which need a whole session. See [`is_transaction_pooler`].
pub async fn ensure_session(url: &DatabaseUrl) -> Result<()> {
    if is_transaction_pooler(url).await? {
        return Err(transaction_pooler(url));
    }
    Ok(())
}

/// Whether `url` leads through a transaction pooler (PgBouncer `pool_mode = transaction`).
/// The probe marks this session and reads the mark back twice: once alone (a round-robin
/// pooler, `server_round_robin = 1`, hands this client's next transaction to another server
/// session), and once while a second connection holds the server session just used (a LIFO
/// pooler, PgBouncer's default, hands that one out first). On a real session the mark is
/// there both times; through a transaction pooler it is gone at least once, or the read
/// waits for the other's transaction. Each connection is bounded as [`connect_client`]
/// bounds it, host by host; the probe's statements together by
/// [`connect_timeout`](super::connect_timeout). (One bound over both connections and the
/// statements would run out on a frozen host first in a list, before the next host is
/// tried.)
pub async fn is_transaction_pooler(url: &DatabaseUrl) -> Result<bool> {
    let limit = connect_timeout(url)?;
    let (this, other) = (connect_client(url).await?, connect_client(url).await?);
    match tokio::time::timeout(limit, probe_session(url, limit, this, other)).await {
        Ok(answer) => answer,
        Err(_) => Err(Error::Connection {
            url: url.to_string(),
            reason: format!(
                "no answer within {}s while checking for a transaction pooler (a pooler \
                 with no free server session, or a frozen server)",
                limit.as_secs()
            ),
        }),
    }
}

async fn probe_session(
    url: &DatabaseUrl,
    limit: Duration,
    this: tokio_postgres::Client,
    other: tokio_postgres::Client,
) -> Result<bool> {
    // A read that waits is a read through a pooler whose sessions are all taken: it gets a
    // third of the bound, so the answer comes before the bound does.
    let wait = (limit / 3).min(Duration::from_secs(2));
    let failed = |e| driver_error(url, &e);
    // The simple protocol throughout: it works through any pooler, where a prepared
    // statement may not.
    let mark = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let set = format!("SET app.session_mark = '{mark}'");
    traced(&set, this.batch_execute(&set))
        .await
        .map_err(failed)?;
    let alone = read_mark(&this, wait).await.map_err(failed)?;
    let begin = "BEGIN; SELECT 1";
    traced(begin, other.batch_execute(begin))
        .await
        .map_err(failed)?;
    let crowded = read_mark(&this, wait).await;
    let _ = traced("ROLLBACK", other.batch_execute("ROLLBACK")).await;
    let crowded = crowded.map_err(failed)?;
    let kept = |seen: &Option<String>| seen.as_deref() == Some(mark.as_str());
    Ok(!(kept(&alone) && kept(&crowded)))
}

/// `app.session_mark` as `client`'s session holds it; `None` if the read waits past `wait`.
async fn read_mark(
    client: &tokio_postgres::Client,
    wait: Duration,
) -> Result<Option<String>, tokio_postgres::Error> {
    use tokio_postgres::SimpleQueryMessage;
    let sql = "SELECT current_setting('app.session_mark', true)";
    let read = traced(sql, client.simple_query(sql));
    let Ok(rows) = tokio::time::timeout(wait, read).await else {
        return Ok(None);
    };
    Ok(rows?.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    }))
}

/// The refusal of writing work (migrations, `init_db`) on `url`, a standby: it would fail
/// on its first write, and a host list without `target_session_attrs=read-write` may land
/// on a standby when the primary is first in the list no more.
pub(crate) fn standby(url: &DatabaseUrl) -> Error {
    Error::Migration(format!(
        "{url} is a standby (in recovery): migrations must run on the primary; with a \
         multi-host URL add target_session_attrs=read-write"
    ))
}

/// The refusal of work that needs a whole session (migrations) on `url`, a transaction
/// pooler.
pub(crate) fn transaction_pooler(url: &DatabaseUrl) -> Error {
    Error::Connection {
        url: url.to_string(),
        reason: "it leads through a transaction pooler (PgBouncer pool_mode = transaction), \
                 where the migration lock would not hold and statements cross server \
                 sessions: set DATABASE_DIRECT_URL to the server itself"
            .into(),
    }
}
