//! AWS Signature Version 4 for the requests a source plugin describes, as
//! botocore's `SigV4Auth` computes it (the tests compare the two byte for
//! byte). Written here on `hmac` and `sha2`, which the host already has:
//! the official `aws-sigv4` crate brings the Smithy runtime with it.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// Credentials to sign with. Never logged, never echoed.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A temporary credential's session token, sent as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsCredentials(…)")
    }
}

/// Where and as what a request is signed.
#[derive(Debug, Clone)]
pub struct SigV4 {
    pub region: String,
    /// The signing name of the service, e.g. `monitoring` for CloudWatch.
    pub service: String,
    pub credentials: AwsCredentials,
}

/// What signing adds to a request: `X-Amz-Date`, the session token when
/// there is one, and `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub headers: Vec<(String, String)>,
}

/// `YYYYMMDD'T'HHMMSS'Z'` for unix seconds.
pub fn amz_date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl SigV4 {
    /// `url` with its query string in the canonical encoding, which is
    /// what is sent as well as signed: a server then reads the same
    /// parameters the signature covers, however the plugin encoded them.
    pub fn canonical_url(url: &reqwest::Url) -> reqwest::Url {
        let mut url = url.clone();
        if let Some(query) = url.query().map(canonical_query) {
            url.set_query(Some(&query).filter(|q| !q.is_empty()).map(String::as_str));
        }
        url
    }

    /// Signs a request to `url` at `unix` seconds. `headers` are those the
    /// request carries besides `Host` (which is signed as the URL's
    /// authority); every one of them is signed but `User-Agent`, as
    /// botocore does.
    pub fn sign(
        &self,
        method: &str,
        url: &reqwest::Url,
        headers: &[(String, String)],
        body: &[u8],
        unix: i64,
    ) -> Signed {
        let date_time = amz_date(unix);
        let date = &date_time[..8];
        let mut added = vec![("X-Amz-Date".to_string(), date_time.clone())];
        if let Some(token) = &self.credentials.session_token {
            added.push(("X-Amz-Security-Token".to_string(), token.clone()));
        }
        let mut signed: Vec<(String, String)> = headers
            .iter()
            .chain(&added)
            .filter(|(name, _)| !name.eq_ignore_ascii_case("user-agent"))
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect();
        signed.push(("host".into(), host(url)));
        // By name only: a repeated header's values keep the order sent.
        signed.sort_by(|a, b| a.0.cmp(&b.0));
        // Repeated names are one line, values joined by commas, in order.
        let mut lines: Vec<(String, String)> = Vec::new();
        for (name, value) in signed {
            match lines.last_mut() {
                Some((last, joined)) if *last == name => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                _ => lines.push((name, value)),
            }
        }
        let signed_headers = lines
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = lines.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let canonical = [
            method.to_ascii_uppercase(),
            canonical_path(url.path()),
            canonical_query(url.query().unwrap_or("")),
            canonical_headers,
            signed_headers.clone(),
            hex::encode(Sha256::digest(body)),
        ]
        .join("\n");
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.credentials.secret_access_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        added.push((
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.credentials.access_key_id
            ),
        ));
        Signed { headers: added }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The URL's host, with its port unless it is the scheme's default.
fn host(url: &reqwest::Url) -> String {
    let name = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{name}:{port}"),
        None => name.to_string(),
    }
}

/// Percent-encodes everything but the unreserved characters and, for a
/// path, `/`.
fn encode(text: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path with dot segments removed, then encoded once more: the
/// encoding botocore gives every service but S3.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let normal = format!("/{}", segments.join("/"));
    encode(normal.as_bytes(), true)
}

/// The query's pairs, each name and value decoded and encoded again as
/// AWS canonicalises them (`%20` for a space, `%2A` for `*`, upper-case
/// hex), then sorted. A query botocore builds is already in that form, so
/// its signature is unchanged; one a plugin form-encodes (`+`, a raw `*`)
/// is signed as AWS will check it.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let again = |text: &str| encode(&percent_decode(text), false);
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (again(k), again(v))
        })
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `%XX` sequences decoded to bytes and `+` to a space (the SDKs'
/// form encoding); anything else kept as written.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `get-vanilla` case of AWS's published SigV4 test suite
    /// (example credentials, `service` in `us-east-1`, 2015-08-30T12:36:00Z).
    #[test]
    fn the_published_vanilla_get_signs_as_aws_documents() {
        let signer = SigV4 {
            region: "us-east-1".into(),
            service: "service".into(),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            },
        };
        let url: reqwest::Url = "https://example.amazonaws.com/".parse().unwrap();
        let signed = signer.sign("GET", &url, &[], b"", 1_440_938_160);
        assert_eq!(
            signed.headers[0],
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string())
        );
        assert_eq!(
            signed.headers[1].1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// `get-vanilla-query-order-key-case`: parameters are signed sorted.
    #[test]
    fn query_parameters_are_signed_in_order() {
        let signer = SigV4 {
            region: "us-east-1".into(),
            service: "service".into(),
            credentials: AwsCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            },
        };
        let url: reqwest::Url = "https://example.amazonaws.com/?Param2=value2&Param1=value1"
            .parse()
            .unwrap();
        let signed = signer.sign("GET", &url, &[], b"", 1_440_938_160);
        assert!(
            signed.headers[1].1.ends_with(
                "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            ),
            "{}",
            signed.headers[1].1
        );
    }

    #[test]
    fn query_strings_are_signed_in_the_encoding_aws_checks() {
        assert_eq!(
            canonical_query("q=sum(rate(x))+*+2&a=b%2fc"),
            "a=b%2Fc&q=sum%28rate%28x%29%29%20%2A%202"
        );
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    }

    #[test]
    fn paths_lose_dot_segments_and_are_encoded_again() {
        assert_eq!(canonical_path("/a/./b/../c"), "/a/c");
        assert_eq!(canonical_path("/a%20b"), "/a%2520b");
        assert_eq!(canonical_path(""), "/");
    }
}
