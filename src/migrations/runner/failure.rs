//! How a step failed, as the runner decides on it: the error to report, and the server's
//! own message, by which a lock timeout is told from other failures.

use crate::Error;

/// A step's failure as the runner decides on it.
#[derive(Debug)]
pub(super) struct Failure {
    /// The error to report; a statement's names its file, number and line.
    pub(super) error: Error,
    /// The server's own message for what failed, when the server refused something: what
    /// a lock timeout is recognised by.
    pub(super) server_message: Option<String>,
}

impl Failure {
    /// The harness's error when the step kept none of its own: ours come back out as they
    /// were, the harness's own bookkeeping errors with their text and server message.
    pub(super) fn from_harness(e: Box<dyn std::error::Error + Send + Sync>) -> Failure {
        let e = match e.downcast::<Error>() {
            Ok(ours) => return Failure::from(*ours),
            Err(other) => other,
        };
        let server_message = match e.downcast_ref::<diesel::result::Error>() {
            Some(diesel::result::Error::DatabaseError(_, info)) => Some(info.message().to_owned()),
            _ => None,
        };
        let error = Error::Migration(e.to_string());
        Failure {
            error,
            server_message,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let server_message = None;
        Failure {
            error,
            server_message,
        }
    }
}
