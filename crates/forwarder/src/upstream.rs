//! Parsing a proxy URL (`http://`, `https://`, `socks5://`, optionally with
//! `user:password@`) into an [`Upstream`].
//!
//! Error messages never quote the URL: it may hold a password. Nothing here connects.

use std::fmt;

use percent_encoding::percent_decode_str;

/// The kind of upstream proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// An HTTP proxy (CONNECT for tunnels, absolute-form requests for plain HTTP).
    Http,
    /// An HTTP proxy reached over TLS.
    Https,
    /// A SOCKS5 proxy (RFC 1928; username/password per RFC 1929).
    Socks5,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Socks5 => "socks5",
        }
    }
}

/// A user name and password for the upstream proxy, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (a secret: never printed, see the `Debug` impl).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &"***")
            .field("password", &"***")
            .finish()
    }
}

/// `fn(url) -> Upstream`: a proxy the browser's traffic should go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its kind.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default when the URL has none: 80, 443, 1080).
    pub port: u16,
    /// `user:password@`, if the URL has them.
    pub credentials: Option<Credentials>,
}

/// Why a proxy URL is not usable. The messages never contain the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a URL at all.
    #[error(
        "not a proxy URL (expected scheme://[user:password@]host[:port] with scheme http, https or socks5)"
    )]
    NotAUrl,
    /// A scheme other than http, https, socks5.
    #[error("unsupported proxy scheme {0:?} (expected http, https or socks5)")]
    Scheme(String),
    /// No host.
    #[error("no host in the proxy URL (expected scheme://[user:password@]host[:port])")]
    NoHost,
    /// A path, query or fragment.
    #[error(
        "a proxy URL has no path, query or fragment (expected scheme://[user:password@]host[:port])"
    )]
    Path,
    /// SOCKS5 limits (RFC 1929).
    #[error("socks5 proxy credentials need a user name and a password of 1 to 255 bytes each")]
    SocksCredentials,
    /// Percent-encoding that is not UTF-8.
    #[error("proxy credentials are not valid UTF-8 once percent-decoded")]
    Encoding,
}

impl Upstream {
    /// Parse and check a proxy URL.
    pub fn parse(text: &str) -> Result<Upstream, ParseError> {
        let url = url::Url::parse(text.trim()).map_err(|_| ParseError::NotAUrl)?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "socks5" => Scheme::Socks5,
            other => return Err(ParseError::Scheme(other.to_owned())),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ParseError::NoHost)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path_ok = matches!(url.path(), "" | "/");
        if !path_ok || url.query().is_some() || url.fragment().is_some() {
            return Err(ParseError::Path);
        }
        let port = url.port().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Socks5 => 1080,
        });
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ParseError::Encoding)
        };
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(Credentials {
                user: decode(url.username())?,
                password: decode(url.password().unwrap_or(""))?,
            })
        };
        if let Some(c) = &credentials
            && scheme == Scheme::Socks5
            && (!(1..=255).contains(&c.user.len()) || !(1..=255).contains(&c.password.len()))
        {
            return Err(ParseError::SocksCredentials);
        }
        Ok(Upstream {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// `scheme://host:port` without credentials: what Chromium's `--proxy-server`
    /// may be given when no forwarder is needed.
    pub fn without_credentials(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}", self.scheme.as_str(), host, self.port)
    }

    pub(crate) fn address(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(&str, bool), ParseError>) {
        let got = Upstream::parse(text).map(|u| (u.without_credentials(), u.credentials.is_some()));
        let expected = expected.map(|(s, c)| (s.to_owned(), c));
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn proxy_urls() {
        check(
            "http://127.0.0.1:3128",
            Ok(("http://127.0.0.1:3128", false)),
        );
        check("http://proxy", Ok(("http://proxy:80", false)));
        check("http://proxy/", Ok(("http://proxy:80", false)));
        check("https://proxy", Ok(("https://proxy:443", false)));
        check("socks5://127.0.0.1", Ok(("socks5://127.0.0.1:1080", false)));
        check(
            "http://u:p@127.0.0.1:3128",
            Ok(("http://127.0.0.1:3128", true)),
        );
        check("socks5://u:p@[::1]:1080", Ok(("socks5://[::1]:1080", true)));
        check("ftp://proxy:21", Err(ParseError::Scheme("ftp".into())));
        check("127.0.0.1:3128", Err(ParseError::NotAUrl));
        check("proxy", Err(ParseError::NotAUrl));
        check("http://proxy:3128/path", Err(ParseError::Path));
        check("http://proxy:3128?x", Err(ParseError::Path));
        check("http://proxy:99999", Err(ParseError::NotAUrl));
        check("https://u:p@proxy", Ok(("https://proxy:443", true)));
        check("socks5://u@proxy", Err(ParseError::SocksCredentials));
        check("http://u:%FF@proxy", Err(ParseError::Encoding));
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_debug_printed() {
        let u = Upstream::parse("http://us%40er:p%3Ass@127.0.0.1:1").unwrap();
        let c = u.credentials.clone().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("us@er", "p:ss"));
        let shown = format!("{u:?}");
        assert!(
            !shown.contains("p:ss") && !shown.contains("us@er"),
            "{shown}"
        );
    }

    #[test]
    fn errors_never_quote_the_url() {
        for bad in [
            "http://u:hunter2@proxy:1/x",
            "ftp://u:hunter2@p",
            "https://u:hunter2@p/path",
        ] {
            let e = Upstream::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
