//! Function processes under the Runtime API emulator: cold starts, and warm runs that end
//! with the process's peak RSS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::emulator::Emulator;
use crate::stats;

/// How long one invocation may take before the run is given up.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The same for a heavy request (a 473-entry FHIR transaction takes minutes on moto, which
/// copies the whole table for every item of a TransactWriteItems).
const HEAVY_TIMEOUT: Duration = Duration::from_secs(900);

/// A function binary and what to send it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `hello` or the function's package name.
    pub name: String,
    pub bootstrap: PathBuf,
    /// The route of the cold invocation, for the report (e.g. `GET /documents/{id}`).
    pub route: String,
    /// The event of the first (cold) invocation.
    pub cold_event: Vec<u8>,
    /// Events of warm invocations, used in turn.
    pub warm_events: Vec<Vec<u8>>,
    /// Statuses a correct answer may have.
    pub expect: Vec<u16>,
    /// The function's environment (the template's variables), on top of the Lambda ones.
    pub env: Vec<(String, String)>,
    /// A heavy request (what it is, and its event) for a second memory run, which sends it
    /// once after the cold event and before the warm ones: peak RSS with it.
    pub heavy: Option<(String, Vec<u8>)>,
}

/// One cold start.
#[derive(Debug, Clone, Copy)]
pub struct ColdSample {
    /// Process start to the first `/next` poll.
    pub init_ms: f64,
    /// Process start to the first response posted.
    pub first_response_ms: f64,
    /// First event handed over to the first response (the cold invocation itself).
    pub first_invoke_ms: f64,
    /// The same event again, right after (warm): handed over to response.
    pub second_invoke_ms: f64,
    pub status: u16,
}

/// A process after many warm invocations.
#[derive(Debug, Clone)]
pub struct WarmRun {
    /// `VmHWM` (peak resident set) in KiB after the invocations.
    pub hwm_kib: u64,
    /// `VmRSS` in KiB after the invocations.
    pub rss_kib: u64,
    /// Event handed over to response posted, per warm invocation, in microseconds.
    pub latency_us: Vec<f64>,
    pub invocations: usize,
    /// The prelude's invocation (event handed over to response posted), in milliseconds.
    pub prelude_ms: Option<f64>,
}

/// The variables the Lambda service sets for a `provided.al2023` function with the template's
/// settings (256 MB, x86_64), and dummy credentials.
fn lambda_env(name: &str, api: &str, task_root: &Path) -> Vec<(String, String)> {
    let v = |k: &str, val: &str| (k.to_owned(), val.to_owned());
    vec![
        v("PATH", "/usr/local/bin:/usr/bin:/bin"),
        v("LANG", "en_US.UTF-8"),
        v("TZ", ":UTC"),
        v("_HANDLER", "bootstrap"),
        v("LAMBDA_TASK_ROOT", &task_root.to_string_lossy()),
        v("AWS_LAMBDA_RUNTIME_API", api),
        v("AWS_LAMBDA_FUNCTION_NAME", name),
        v("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        v("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        v("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        v("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{name}")),
        v("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench"),
        v("AWS_REGION", "us-east-1"),
        v("AWS_DEFAULT_REGION", "us-east-1"),
        v("AWS_ACCESS_KEY_ID", "test"),
        v("AWS_SECRET_ACCESS_KEY", "test"),
        v("AWS_SESSION_TOKEN", "test"),
    ]
}

fn spawn(t: &Target, api: &str, log: &Path) -> Result<(tokio::process::Child, Instant), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let root = t
        .bootstrap
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // Diagnostics: BENCH_WRAP="strace -f -tt -o /tmp/trace" runs the function under a tool
    // (the figures then include the tool's overhead).
    let wrap: Vec<String> = std::env::var("BENCH_WRAP")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut cmd = match wrap.split_first() {
        Some((tool, args)) => {
            let mut c = tokio::process::Command::new(tool);
            c.args(args).arg(&t.bootstrap);
            c
        }
        None => tokio::process::Command::new(&t.bootstrap),
    };
    cmd.env_clear()
        .envs(lambda_env(&t.name, api, &root))
        .envs(t.env.iter().cloned())
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", t.bootstrap.display()))?;
    Ok((child, t0))
}

/// Waits for the outcome of invocation `id`, or for the process to exit (a function that fails
/// at start exits before it polls).
async fn outcome(
    emu: &Emulator,
    id: &str,
    child: &mut tokio::process::Child,
) -> Result<crate::emulator::Outcome, String> {
    outcome_within(emu, id, child, INVOKE_TIMEOUT).await
}

async fn outcome_within(
    emu: &Emulator,
    id: &str,
    child: &mut tokio::process::Child,
    timeout: Duration,
) -> Result<crate::emulator::Outcome, String> {
    tokio::select! {
        o = emu.wait(id, timeout) => o,
        status = child.wait() => Err(match status {
            Ok(s) => format!("the process exited ({s}) before answering"),
            Err(e) => format!("the process is gone: {e}"),
        }),
    }
}

async fn stop(mut child: tokio::process::Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The status of an API Gateway response document.
fn status_of(body: &[u8]) -> Option<u16> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("statusCode")?.as_u64().map(|s| s as u16)
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn check(t: &Target, result: &Result<Vec<u8>, Vec<u8>>, log: &Path) -> Result<u16, String> {
    match result {
        Ok(body) => {
            let status = status_of(body).ok_or_else(|| {
                format!(
                    "{}: not an API Gateway response: {}",
                    t.name,
                    String::from_utf8_lossy(body)
                )
            })?;
            if t.expect.contains(&status) {
                Ok(status)
            } else {
                Err(format!(
                    "{} {}: status {status}, expected {:?}: {}\n{}",
                    t.name,
                    t.route,
                    t.expect,
                    String::from_utf8_lossy(body),
                    tail(log)
                ))
            }
        }
        Err(body) => Err(format!(
            "{}: invocation error {}\n{}",
            t.name,
            String::from_utf8_lossy(body),
            tail(log)
        )),
    }
}

/// Starts the function with its cold event already queued, waits for the response and stops
/// the process.
pub async fn cold_start(t: &Target, log: &Path) -> Result<ColdSample, String> {
    let emu = Emulator::start(&t.name)
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let id = emu.push(t.cold_event.clone());
    let (mut child, t0) = spawn(t, &emu.api(), log)?;
    let first = outcome(&emu, &id, &mut child).await;
    // The same event once more, warm: what the first invocation costs beyond a warm one.
    let second = match &first {
        Ok(_) => {
            let id2 = emu.push(t.cold_event.clone());
            Some(outcome(&emu, &id2, &mut child).await)
        }
        Err(_) => None,
    };
    stop(child).await;
    let outcome = first.map_err(|e| format!("{}: {e}\n{}", t.name, tail(log)))?;
    let status = check(t, &outcome.result, log)?;
    let second = second
        .expect("a first outcome")
        .map_err(|e| format!("{}: second invocation: {e}\n{}", t.name, tail(log)))?;
    check(t, &second.result, log)?;
    let poll = emu
        .first_poll()
        .ok_or_else(|| format!("{}: responded without polling", t.name))?;
    Ok(ColdSample {
        init_ms: stats::ms(poll - t0),
        first_response_ms: stats::ms(outcome.done - t0),
        first_invoke_ms: stats::ms(outcome.done - outcome.delivered),
        second_invoke_ms: stats::ms(second.done - second.delivered),
        status,
    })
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Starts the function, sends it the cold event, `prelude` (if any; not timed) and then `n`
/// warm events (one at a time, as Lambda does), reads its peak RSS and stops it.
pub async fn warm_run(
    t: &Target,
    n: usize,
    prelude: Option<&[u8]>,
    log: &Path,
) -> Result<WarmRun, String> {
    let emu = Emulator::start(&t.name)
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let (mut child, _) = spawn(t, &emu.api(), log)?;
    let pid = child.id().ok_or("no pid")?;
    let run = async {
        let id = emu.push(t.cold_event.clone());
        let o = outcome(&emu, &id, &mut child).await?;
        check(t, &o.result, log)?;
        let prelude_ms = match prelude {
            Some(event) => {
                let id = emu.push(event.to_vec());
                let o = outcome_within(&emu, &id, &mut child, HEAVY_TIMEOUT).await?;
                check(t, &o.result, log)?;
                Some(stats::ms(o.done - o.delivered))
            }
            None => None,
        };
        let mut latency_us = Vec::with_capacity(n);
        for i in 0..n {
            let events = if t.warm_events.is_empty() {
                std::slice::from_ref(&t.cold_event)
            } else {
                &t.warm_events[..]
            };
            let id = emu.push(events[i % events.len()].clone());
            let o = outcome(&emu, &id, &mut child).await?;
            check(t, &o.result, log)?;
            latency_us.push(stats::us(o.done - o.delivered));
        }
        Ok::<_, String>((latency_us, prelude_ms))
    }
    .await;
    let hwm = proc_status_kib(pid, "VmHWM");
    let rss = proc_status_kib(pid, "VmRSS");
    stop(child).await;
    let (latency_us, prelude_ms) = run.map_err(|e| format!("{}: {e}", t.name))?;
    Ok(WarmRun {
        hwm_kib: hwm.ok_or_else(|| format!("{}: no VmHWM in /proc/{pid}/status", t.name))?,
        rss_kib: rss.unwrap_or(0),
        latency_us,
        invocations: n,
        prelude_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_api_gateway_statuses_and_proc_fields() {
        assert_eq!(status_of(br#"{"statusCode":200,"body":"x"}"#), Some(200));
        assert_eq!(status_of(b"hello"), None);
        let me = std::process::id();
        assert!(proc_status_kib(me, "VmHWM").is_some_and(|k| k > 0));
        assert!(proc_status_kib(me, "VmNoSuchField").is_none());
    }
}
