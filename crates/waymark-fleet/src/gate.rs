//! A wave's gate: a check command and a pause before the next wave.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// What must hold before the next wave starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// A shell command (run by `sh -c`) that exits 0 when the wave's
    /// targets are healthy: a probe of the application, a query of the
    /// monitoring. It gets `WAYMARK_FLEET_WAVE` and `WAYMARK_FLEET_TARGETS`
    /// (the wave's target names, space-separated).
    pub check: Option<String>,
    /// How long to wait before the check, for the wave's change to meet
    /// real traffic (a bake time). Only after a wave that changed
    /// something: a resumed rollout does not wait again for a wave that was
    /// already done.
    pub pause: Option<Duration>,
    /// How long the check may run before it counts as failed.
    pub timeout: Duration,
}

/// How a gate went.
#[derive(Debug, Clone)]
pub struct GateReport {
    /// Whether the next wave may start.
    pub passed: bool,
    /// How long it paused.
    pub paused: Duration,
    /// The check's exit code, if it ran and exited.
    pub code: Option<i32>,
    /// Why it failed (the check's last lines of output, or its timeout).
    pub message: Option<String>,
    /// How long the check ran.
    pub checked: Duration,
}

impl Gate {
    /// Pauses (when `pause` is set and the wave `changed` something), then
    /// runs the check.
    pub(crate) async fn pass(&self, wave: &str, targets: &[&str], changed: bool) -> GateReport {
        let paused = match self.pause {
            Some(pause) if changed => {
                tokio::time::sleep(pause).await;
                pause
            }
            _ => Duration::ZERO,
        };
        let mut report = GateReport {
            passed: true,
            paused,
            code: None,
            message: None,
            checked: Duration::ZERO,
        };
        let Some(check) = &self.check else {
            return report;
        };
        let started = Instant::now();
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(check)
            .env("WAYMARK_FLEET_WAVE", wave)
            .env("WAYMARK_FLEET_TARGETS", targets.join(" "))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let outcome = match child {
            Err(e) => Err(format!("could not start `{check}`: {e}")),
            Ok(child) => match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
                Err(_) => Err(format!(
                    "`{check}` ran longer than the gate's timeout ({}) and was stopped",
                    humantime::format_duration(self.timeout)
                )),
                Ok(Err(e)) => Err(format!("`{check}`: {e}")),
                Ok(Ok(output)) => {
                    report.code = output.status.code();
                    if output.status.success() {
                        Ok(())
                    } else {
                        let said = tail(&output.stderr).or_else(|| tail(&output.stdout));
                        let status = match output.status.code() {
                            Some(code) => format!("exited with {code}"),
                            None => "was killed by a signal".to_owned(),
                        };
                        Err(match said {
                            Some(said) => format!("`{check}` {status}: {said}"),
                            None => format!("`{check}` {status}"),
                        })
                    }
                }
            },
        };
        report.checked = started.elapsed();
        if let Err(message) = outcome {
            report.passed = false;
            report.message = Some(message);
        }
        report
    }
}

/// The last three non-empty lines of a command's output, joined.
fn tail(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(3)..].join(" / "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(check: &str) -> Gate {
        Gate {
            check: Some(check.to_owned()),
            pause: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_check_sees_its_wave_and_passes_on_zero() {
        let report = gate("test \"$WAYMARK_FLEET_WAVE/$WAYMARK_FLEET_TARGETS\" = \"eu/a b\"")
            .pass("eu", &["a", "b"], true)
            .await;
        assert!(report.passed, "{report:?}");
        assert_eq!(report.code, Some(0));
    }

    #[tokio::test]
    async fn a_failing_check_says_what_it_printed() {
        let report = gate("echo checking; echo 'error rate 7%' >&2; exit 3")
            .pass("eu", &[], true)
            .await;
        assert!(!report.passed);
        assert_eq!(report.code, Some(3));
        assert_eq!(
            report.message.as_deref(),
            Some("`echo checking; echo 'error rate 7%' >&2; exit 3` exited with 3: error rate 7%")
        );
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_at_its_timeout() {
        let mut g = gate("sleep 30");
        g.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let report = g.pass("eu", &[], true).await;
        assert!(!report.passed);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            report.message.as_deref(),
            Some("`sleep 30` ran longer than the gate's timeout (200ms) and was stopped")
        );
    }

    #[tokio::test]
    async fn the_pause_waits_only_after_a_change() {
        let g = Gate {
            check: None,
            pause: Some(Duration::from_millis(150)),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(g.pass("eu", &[], false).await.paused, Duration::ZERO);
        let started = Instant::now();
        assert_eq!(g.pass("eu", &[], true).await.paused, Duration::from_millis(150));
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
}
