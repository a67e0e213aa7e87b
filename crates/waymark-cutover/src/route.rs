//! The routing hook: a shell command, given at prepare, that points the
//! application's traffic at a server, for setups where PgBouncer does not
//! stand in front of both (DNS, a service registry, a load balancer).

use std::process::Stdio;
use std::time::Duration;

use crate::error::CutoverError;
use crate::state::Side;

/// How long the command may take when it runs outside a switch's deadline
/// (undoing a move); inside one, the deadline bounds it.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `command` by `sh -c` to point traffic at `side`, whose URL it gets
/// as `WAYMARK_CUTOVER_LIVE_URL` (and `source` or `target` as
/// `WAYMARK_CUTOVER_LIVE`). The command must be safe to run twice: an undo
/// runs it again for the other server. It is killed if the switch is
/// abandoned while it runs.
pub(crate) async fn route(command: &str, side: Side, url: &str) -> Result<(), CutoverError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("WAYMARK_CUTOVER_LIVE", side.name())
        .env("WAYMARK_CUTOVER_LIVE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CutoverError::Step(format!("running the route command `{command}`: {e}")))?;
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .map_err(|_| CutoverError::Step(format!("the route command `{command}` did not finish within {LIMIT:?}")))?
        .map_err(|e| CutoverError::Step(format!("running the route command `{command}`: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr.trim();
    Err(CutoverError::Step(format!(
        "the route command `{command}`, pointing traffic at the {}, failed ({}){}",
        side.name(),
        output.status,
        if said.is_empty() {
            String::new()
        } else {
            format!(": {}", said.lines().collect::<Vec<_>>().join(" / "))
        }
    )))
}
