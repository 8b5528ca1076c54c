//! A fake network peer's socket: one listener on a free port of 127.0.0.1 and the task serving
//! it, which ends when the test drops the server (so a test never leaks a server into the next).

use std::{future::Future, net::SocketAddr};

use axum::Router;
use tokio::{net::TcpListener, task::JoinHandle};

/// A server running for the length of a test; aborted when dropped.
pub struct FakeServer {
    /// Where it listens.
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Serves an axum router.
    pub async fn start(router: Router) -> FakeServer {
        FakeServer::listen(|listener| async move {
            // Only an I/O error of the listener ends it; the test then sees refused connections.
            let _ = axum::serve(listener, router).await;
        })
        .await
    }

    /// Hands a listener to `accept`, for peers that do not speak HTTP (SMTP).
    pub async fn listen<F, Fut>(accept: F) -> FakeServer
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake server on 127.0.0.1");
        let address = listener.local_addr().expect("the fake server's address");
        let task = tokio::spawn(accept(listener));
        FakeServer { address, task }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The URL of `path` (which starts with `/`) on it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

/// Serves a router on a free port of 127.0.0.1 ([`FakeServer::start`]).
pub async fn serve(router: Router) -> FakeServer {
    FakeServer::start(router).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;
    use crate::testing::Reply;

    /// The raw answer to `GET path`.
    async fn get_raw(server: &FakeServer, path: &str) -> String {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn serves_a_router_until_dropped() {
        let router = Router::new().route(
            "/hello",
            get(|| {
                Reply::raw(201, "text/plain", "hi")
                    .header("x-fake", "1")
                    .into_response()
            }),
        );
        let server = serve(router).await;
        assert!(server.base_url().starts_with("http://127.0.0.1:"));
        assert_eq!(server.url("/hello"), format!("{}/hello", server.base_url()));
        let answer = get_raw(&server, "/hello").await;
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
        assert!(answer.contains("x-fake: 1"), "{answer}");
        assert!(answer.ends_with("hi"), "{answer}");

        let address = server.address;
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(address).await.is_err(), "stopped");
    }
}
