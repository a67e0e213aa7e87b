use waymark_db::DbError;

/// What went wrong comparing or switching servers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CutoverError {
    /// A database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}
