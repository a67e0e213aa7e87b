/// `url` with the password, if any, replaced by `***`.
///
/// Every URL waymark prints or logs goes through here; a password never
/// leaves the process except to the server it belongs to.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end + 3]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(&rest[authority_end..]));
    out
}

/// Hides `password=` and `sslpassword=` query parameters too.
fn redact_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_owned();
    };
    let (path, query) = tail.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}{}", params.join("&"))
}

/// The files a URL's query names for TLS (a root, a client certificate
/// and its key), by their key and decoded path; a certificate given inline
/// as PEM is not a file and is left out.
pub(crate) fn tls_files(url: &str) -> Vec<(String, String)> {
    const KEYS: [&str; 10] = [
        "sslrootcert",
        "ssl-root-cert",
        "sslca",
        "ssl-ca",
        "sslcert",
        "ssl-cert",
        "sslkey",
        "ssl-key",
        "sslcapath",
        "ssl-capath",
    ];
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| KEYS.contains(&key.to_ascii_lowercase().as_str()))
        .map(|(key, value)| (key.to_owned(), decoded(value)))
        .filter(|(_, value)| !value.starts_with("-----BEGIN"))
        .collect()
}

/// `value` with its `%XX` escapes (and `+`, a space in a query) decoded.
fn decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{redact, tls_files};

    #[test]
    fn finds_the_files_named_for_tls() {
        let url = "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20root.pem&sslcert=-----BEGIN%20CERT\
                   &application_name=x&SSLKEY=k.pem";
        assert_eq!(
            tls_files(url),
            [
                ("sslrootcert".to_owned(), "/etc/ca root.pem".to_owned()),
                ("SSLKEY".to_owned(), "k.pem".to_owned())
            ]
        );
        assert!(tls_files("mysql://u@h/db").is_empty());
        assert_eq!(
            tls_files("mysql://u@h/db?ssl-mode=verify_ca&ssl-ca=ca.pem"),
            [("ssl-ca".to_owned(), "ca.pem".to_owned())]
        );
    }

    #[test]
    fn hides_passwords() {
        let cases = [
            ("postgres://u:s3cret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "mysql://u:p%40ss@h/db?ssl-mode=required",
                "mysql://u:***@h/db?ssl-mode=required",
            ),
            (
                "postgres://h/db?user=u&password=s3cret",
                "postgres://h/db?user=u&password=***",
            ),
            ("sqlite://waymark.db", "sqlite://waymark.db"),
            ("postgres://u:a@b@h/db", "postgres://u:***@h/db"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }
}
