//! Moving to another PostgreSQL server: the engine's side of
//! `waymark-cutover`.

use waymark_cutover::{CompareOptions, CompareReport};
use waymark_db::{ConnectOptions, Database};

use crate::error::Error;

/// Compares the contents of `target` with `source`: tables, columns, rows
/// range by range, sequences.
pub async fn compare(
    source: &ConnectOptions,
    target: &ConnectOptions,
    options: &CompareOptions,
) -> Result<CompareReport, Error> {
    let source = Database::connect(source).await?;
    let target = Database::connect(target).await?;
    if source.dialect() != target.dialect() {
        let message = format!(
            "{} is {} and {} is {}: only two databases of the same kind compare",
            source.url(),
            source.dialect().name(),
            target.url(),
            target.dialect().name()
        );
        source.close().await;
        target.close().await;
        return Err(Error::Usage(message));
    }
    let report = waymark_cutover::compare(&source, &target, options).await;
    source.close().await;
    target.close().await;
    Ok(report?)
}
