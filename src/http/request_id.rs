//! The `x-request-id` a client sends is kept only when it is a plain token: it goes into
//! every log line of the request and back in the answer, so a long one, or one holding
//! spaces, braces or line breaks (which could forge a log line), is replaced by a new id.

use axum::extract::Request;

/// The longest id kept.
pub const MAX_LEN: usize = 128;

/// Whether `id` is kept: 1 to [`MAX_LEN`] characters out of `A-Z a-z 0-9 . _ : -`.
pub fn is_fit(id: &[u8]) -> bool {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"._:-".contains(b);
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(plain)
}

/// Removes an unfit `x-request-id` (or a repeated one), so the next layer makes a new id.
pub(super) async fn drop_unfit(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let sent: Vec<_> = headers.get_all("x-request-id").iter().collect();
    let keep = matches!(sent.as_slice(), [one] if is_fit(one.as_bytes()));
    if !keep && !sent.is_empty() {
        headers.remove("x-request-id");
    }
    request
}

#[cfg(test)]
mod tests {
    use super::is_fit;

    #[test]
    fn only_plain_ids_are_kept() {
        assert!(is_fit(b"abc-123_x.y:z"));
        assert!(is_fit(&[b'a'; 128]));
        assert!(!is_fit(&[b'a'; 129]));
        assert!(!is_fit(b""));
        assert!(!is_fit(
            b"abc}: app::http::error: request failed error=forged"
        ));
        assert!(!is_fit(b"a\tb"));
    }
}
