//! Waiting for what a test cannot be told about: bounded polling until a check yields a value.

use std::time::Duration;

use anyhow::anyhow;

/// Longest wait for anything the cluster and the code under test do together (a rollout, a
/// condition, a garbage collection).
pub const WAIT: Duration = Duration::from_secs(90);

/// How often [`eventually`] checks: often enough that a test waits little past the moment,
/// rarely enough not to load the apiserver.
pub const POLL: Duration = Duration::from_millis(250);

/// Polls `check` every [`POLL`] until it yields a value, for at most `timeout`.
///
/// An error counts as "not yet" (the apiserver or a process may be briefly unreachable); the
/// last one is in the message when time runs out.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    eventually_every(what, timeout, POLL, check).await
}

/// [`eventually`], checking every `interval`: for checks that cost something themselves, such
/// as listing hundreds of objects while a benchmark measures.
pub async fn eventually_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(err) => anyhow!("timed out after {timeout:?} waiting for {what}; last error: {err:#}"),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn yields_the_first_value_after_retrying_errors() {
        let mut calls = 0;
        let value = eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move {
                match n {
                    1 => Err(anyhow!("not reachable yet")),
                    2 => Ok(None),
                    _ => Ok(Some(n)),
                }
            }
        })
        .await
        .expect("a value");
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn a_timeout_names_what_was_awaited_and_the_last_error() {
        let err = eventually::<(), _, _>("the moon", Duration::from_millis(300), || async {
            Err(anyhow!("too far"))
        })
        .await
        .expect_err("times out");
        let message = format!("{err:#}");
        assert!(message.contains("waiting for the moon"), "{message}");
        assert!(message.contains("last error: too far"), "{message}");
    }
}
