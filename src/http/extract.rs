//! Request extractors that answer in the API's error format, and the visitor identity.

use std::net::IpAddr;

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Query},
    http::{HeaderMap, request::Parts},
};
use switchboard_web::identity::Identity;

use super::{AppState, error::ApiError};

/// `axum::Json`, with rejections in the API's error format.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A raw request body (webhooks verify signatures over the exact bytes), with rejections — a body
/// over the size limit — in the API's error format.
#[derive(Debug)]
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(ApiBytes)
            .map_err(ApiError::from)
    }
}

/// `axum::extract::Query`, with rejections in the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path`, with rejections in the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The website visitor making the request, from `Authorization: Bearer` or `X-Device-ID`.
#[derive(Debug, Clone)]
pub struct Visitor(pub Identity);

impl Visitor {
    /// Identifies the visitor from headers, falling back to the given query-string values (for
    /// `EventSource`, which cannot send headers).
    pub fn from_headers(
        state: &AppState,
        headers: &HeaderMap,
        query_token: Option<&str>,
        query_device: Option<&str>,
    ) -> Result<Visitor, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let authorization = header("authorization")
            .map(str::to_owned)
            .or_else(|| query_token.map(|t| format!("Bearer {t}")));
        let device = header("x-device-id").or(query_device);
        Ok(Visitor(
            state.identity.identify(authorization.as_deref(), device)?,
        ))
    }

    /// The visitor's contact id on the web channel.
    pub fn external_id(&self) -> String {
        self.0.contact().external_id
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Visitor::from_headers(state, &parts.headers, None, None)
    }
}

/// Where a request comes from: the client's address (for limits and the audit log) and the user
/// agent.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The client's address: see [`ClientAddress`].
    pub address: IpAddr,
    /// The client's address as the audit log records it: `client`, or `client (via proxy)` when a
    /// trusted proxy forwarded the request.
    pub remote_addr: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl Origin {
    pub(crate) fn of(parts: &Parts, state: &AppState) -> Origin {
        let address = client_address(parts, &state.proxies);
        let remote_addr = peer(parts).map(|peer| {
            if peer == address {
                address.to_string()
            } else {
                format!("{address} (via {peer})")
            }
        });
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        Origin {
            address,
            remote_addr,
            user_agent,
        }
    }
}

/// Where the request comes from, as an extractor.
#[derive(Debug, Clone)]
pub struct RequestOrigin(pub Origin);

impl FromRequestParts<AppState> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(RequestOrigin(Origin::of(parts, state)))
    }
}

/// The client's address: the connection's peer, or — when the peer is one of
/// `server.trusted_proxies` — the nearest address in `X-Forwarded-For` that is not a trusted
/// proxy (the header is read from the right: what the nearest proxy appended is what it saw; the
/// left end is whatever the client claimed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(ClientAddress(client_address(parts, &state.proxies)))
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_canonical())
}

fn client_address(parts: &Parts, proxies: &[ipnet::IpNet]) -> IpAddr {
    let Some(peer) = peer(parts) else {
        return IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    };
    forwarded_client(peer, &parts.headers, proxies)
}

/// The client of a request a trusted proxy forwarded without saying for whom in a way that can be
/// read (an `X-Forwarded-For` hop that is not an address): not the proxy, and not this machine —
/// all such requests share the limits of this one address.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// The client behind `peer` as trusted proxies tell it.
pub(crate) fn forwarded_client(
    peer: IpAddr,
    headers: &HeaderMap,
    proxies: &[ipnet::IpNet],
) -> IpAddr {
    let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = hop_address(hop) else {
            return UNKNOWN_CLIENT;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`,
/// optionally quoted.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// The name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "sb_session";

/// A signed-in staff member: by bearer token (the API) or by session cookie (the dashboard).
/// Requests that change something and come with the cookie must echo the session's CSRF token in
/// `X-CSRF-Token`. A website visitor's credentials here answer 403, no credentials 401.
#[derive(Debug, Clone)]
pub struct StaffUser {
    /// The account.
    pub user: crate::store::users::User,
    /// The session's CSRF token, when signed in by cookie.
    pub csrf: Option<String>,
    /// What they signed in with (checked again during live streams).
    pub credential: crate::staff::Credential,
    /// Where the request comes from.
    pub origin: Origin,
}

impl StaffUser {
    /// The member as the audit log records them: the account, the way in, the client.
    pub fn actor(&self) -> crate::store::audit::Actor<'_> {
        crate::store::audit::Actor {
            user: &self.user,
            via: if self.csrf.is_some() {
                "dashboard"
            } else {
                "api"
            },
            remote_addr: self.origin.remote_addr.as_deref(),
            user_agent: self.origin.user_agent.as_deref(),
        }
    }

    /// Refuses (403) a member without at least `role`'s rights.
    pub fn require(&self, role: crate::store::users::StaffRole) -> Result<(), ApiError> {
        if self.user.role.includes(role) {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the {role} role"),
            ))
        }
    }
}

/// A cookie's value from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        use axum::http::{Method, StatusCode};
        let origin = Origin::of(parts, state);
        let forbidden = || {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route is for staff; sign in as an expert, supervisor or admin",
            )
        };
        let authorization = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            if let Some(user) = state.staff.from_token(token.trim()).await? {
                return Ok(StaffUser {
                    user,
                    csrf: None,
                    credential: crate::staff::Credential::Bearer(token.trim().to_owned()),
                    origin,
                });
            }
            // A website visitor's own token is a valid identity, but not a staff one.
            return Err(if state.identity.identify(authorization, None).is_ok() {
                forbidden()
            } else {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the bearer token is not a valid staff token (expired?)",
                )
            });
        }
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE)
            && let Some((user, session)) = state.staff.from_session(token).await?
        {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let echoed = parts
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !super::auth::secrets_match(echoed.as_bytes(), session.csrf_token.as_bytes()) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "csrf",
                        "the X-CSRF-Token header is missing or wrong; reload the dashboard",
                    ));
                }
            }
            return Ok(StaffUser {
                user,
                csrf: Some(session.csrf_token),
                credential: crate::staff::Credential::Session(token.to_owned()),
                origin,
            });
        }
        if parts.headers.contains_key("x-device-id") {
            return Err(forbidden());
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in: a staff bearer token or the dashboard's session",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let proxies = [crate::config::parse_proxy("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(
            forwarded_client(peer, &headers(&["198.51.100.1"]), &proxies),
            peer,
            "an untrusted peer cannot claim another address"
        );
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            forwarded_client(
                proxy,
                &headers(&["1.1.1.1, 198.51.100.1, 10.9.9.9"]),
                &proxies
            ),
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "the nearest untrusted hop; what the client claimed on the left is ignored"
        );
        assert_eq!(
            forwarded_client(proxy, &headers(&["1.1.1.1", "198.51.100.1"]), &proxies),
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "several headers read as one list"
        );
        // A proxy that says for nobody: the proxy is the client (it may be a tool of its own).
        assert_eq!(forwarded_client(proxy, &headers(&[]), &proxies), proxy);
        // A hop that cannot be read is nobody we know, and never the proxy itself.
        assert_eq!(
            forwarded_client(proxy, &headers(&["nonsense"]), &proxies),
            UNKNOWN_CLIENT
        );
        assert_eq!(
            forwarded_client(proxy, &headers(&["198.51.100.1:4711"]), &proxies),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            forwarded_client(proxy, &headers(&["\"[2001:db8::7]:4711\""]), &proxies),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            forwarded_client(peer, &headers(&["198.51.100.1"]), &[]),
            peer,
            "no proxies configured: the peer"
        );
    }
}
