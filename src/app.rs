//! The gateway assembled: storage, agents, pipeline, jobs and the HTTP server, with a clean
//! start-up and shutdown.
//!
//! Tests and the binary build it the same way: [`Gateway::build`], then [`Gateway::run`] with a
//! listener (port 0 in tests) and a shutdown signal.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    agents::{AgentRegistry, Catalogue},
    channels::Channels,
    config::{Config, ExpertsConfig},
    evaluations::{Evaluators, job::Evaluations},
    experts::{
        AssignmentRound, Experts,
        notify::{MailQueue, Notifications, WebhookQueue},
    },
    http::{self, AppState, Services},
    inbox::ChannelInbox,
    instances::Membership,
    jobs::{
        Jobs, QueueHandler, ScheduledTask, Work,
        deliver::Deliveries,
        fetch_media::MediaDownloads,
        queue::{RetryPolicy, Wakers},
    },
    lifecycle::Lifecycle,
    limits::Limits,
    live::Hub,
    media_dir::MediaDir,
    pipeline::{Pipeline, quotas::QuotaRefresh, router::ExpireLocks, sweeper::Sweep},
    retention::{Retention, UnlinkedFiles},
    shared::Shared,
    staff::Staff,
    store::Store,
    time::Clock,
};
use switchboard_web::identity::{IdentityVerifier, TokenRules};

/// A gateway ready to serve.
pub struct Gateway {
    config: Arc<Config>,
    /// The database, clock, live hub and queue wakers every service shares.
    shared: Shared,
    pipeline: Pipeline,
    /// The agents visitors may see and choose.
    catalogue: Arc<Catalogue>,
    channels: Channels,
    files: MediaDir,
    experts: Experts,
    /// The experts' settings as they apply (no mail notifications without a channel that mails staff).
    experts_config: ExpertsConfig,
    staff: Staff,
    http: reqwest::Client,
    /// The evaluators of AI replies, when evaluations are on (moved into their job at start).
    evaluators: Option<Evaluators>,
    /// Rate limits and stream caps.
    limits: Arc<Limits>,
    /// Open connections at most (below the open-files limit).
    max_connections: usize,
    /// Starting, serving or stopping.
    lifecycle: Lifecycle,
}

impl Gateway {
    /// Connects to the database, migrates it, and builds agents and pipeline.
    pub async fn build(config: Config) -> anyhow::Result<Gateway> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// Like [`Gateway::build`], with a clock tests can move.
    pub async fn build_with_clock(config: Config, clock: Clock) -> anyhow::Result<Gateway> {
        let http = http_client()?;
        let channels = Channels::from_config(&config).context("invalid configuration")?;
        let store = Store::connect(&config.database)
            .await
            .with_context(|| format!("cannot open the database {}", redact(&config.database.url)))?
            .for_instance(&config.instance.name(config.server.listen));
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        let agents = AgentRegistry::from_config(&config, &http);
        let catalogue = Arc::new(Catalogue::new(&config, &agents));
        let shared = Shared {
            store: store.clone(),
            clock: clock.clone(),
            hub: Hub::default(),
            wakers: Wakers::default(),
        };
        let mut experts_config = config.experts.clone();
        // Mailing experts needs a way to send mail.
        experts_config.notify_by_email &= channels.staff_mailer().is_some();
        let experts = Experts::new(&shared, experts_config.clone());
        let max_connections = http::server::connection_cap(
            config.server.max_connections,
            http::server::raise_open_files_limit(),
        );
        // Streams never take every connection: the rest keep chat requests, webhooks and the
        // health check answering while streams are at their cap.
        let total_streams = match config.limits.streams.total {
            0 => max_connections - (max_connections / 10).max(256).min(max_connections / 2),
            n => n.min(max_connections),
        };
        let limits = Limits::with_quotas(
            &config.limits,
            &config.quotas,
            total_streams,
            config.web.ws_sockets_per_visitor,
            &clock,
        );
        // Quotas count in memory, from what the database says the contacts used so far.
        let (day, month) = limits.quotas.period_starts();
        let accounts = crate::store::usage::quota_accounts(
            &mut store.reader(),
            day,
            month,
            limits.quotas.counts_everyone(),
            None,
        )
        .await
        .context("cannot read the contacts' usage for their quotas")?;
        limits.quotas.load(accounts);
        let pipeline = Pipeline::new(
            &shared,
            agents,
            channels.clone(),
            experts.clone(),
            limits.clone(),
            &config,
        );
        let staff = Staff::connect(
            &config.staff,
            &config.database,
            &config.limits,
            store.clone(),
            clock.clone(),
        )
        .await
        .context("cannot set up staff sign-in")?;
        // Created owner-only with the first file; one an earlier version left open is tightened.
        #[cfg(unix)]
        if config.media.dir.is_dir() {
            crate::private_files::tighten(&config.media.dir, crate::private_files::DIR_MODE)
                .with_context(|| {
                    format!(
                        "cannot protect the media directory {}",
                        config.media.dir.display()
                    )
                })?;
        }
        let files = MediaDir::new(&config.media.dir);
        let evaluators =
            Evaluators::from_config(&config, &http).context("cannot set up the evaluations")?;
        Ok(Gateway {
            config: Arc::new(config),
            shared,
            pipeline,
            catalogue,
            channels,
            files,
            experts,
            experts_config,
            staff,
            http,
            evaluators,
            limits,
            max_connections,
            lifecycle: Lifecycle::default(),
        })
    }

    /// The experts' side.
    pub fn experts(&self) -> &Experts {
        &self.experts
    }

    /// Staff authentication.
    pub fn staff(&self) -> &Staff {
        &self.staff
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, lets running replies
    /// finish (up to `server.shutdown_grace`) and closes the database. Messages still unanswered
    /// are resumed by the next start.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = listener
            .local_addr()
            .context("the listener has no address")?;
        let membership = Arc::new(
            Membership::join(
                self.shared.store.clone(),
                self.shared.clock.clone(),
                self.config.instance.clone(),
            )
            .await?,
        );
        let resumed = self
            .pipeline
            .sweep(Duration::ZERO)
            .await
            .context("cannot look for unanswered messages")?;
        if resumed > 0 {
            info!(
                resumed,
                "resuming messages left unanswered by the previous run"
            );
        }

        let stop = CancellationToken::new();
        let watch = membership.watch(
            self.pipeline.clone(),
            self.shared.wakers.clone(),
            self.shared.hub.clone(),
            stop.clone(),
        );
        // Before any request: events published here reach the other instances' streams.
        let relay = crate::live::relay::start(
            &self.shared.store,
            &self.shared.hub,
            &self.limits,
            stop.clone(),
        );
        let jobs = tokio::spawn({
            let work = self.background_work(address);
            let runner = Jobs {
                store: self.shared.store.clone(),
                clock: self.shared.clock.clone(),
                settings: self.config.jobs.clone(),
            };
            let stop = stop.clone();
            let lifecycle = self.lifecycle.clone();
            async move {
                if let Err(e) = runner.run(work, stop, || lifecycle.serving()).await {
                    tracing::error!(error = %e, "background jobs stopped");
                }
            }
        });

        let state = AppState::from(Services {
            config: self.config.clone(),
            store: self.shared.store.clone(),
            pipeline: self.pipeline.clone(),
            agents: self.catalogue.clone(),
            hub: self.shared.hub.clone(),
            identity: Arc::new(IdentityVerifier::new(TokenRules {
                secret: self.config.web.jwt_secret.as_deref(),
                leeway_secs: self.config.web.jwt_leeway.as_secs(),
                max_lifetime_secs: self.config.web.jwt_max_lifetime.as_secs(),
                audience: self.config.web.jwt_audience.as_deref(),
                issuer: self.config.web.jwt_issuer.as_deref(),
                require_token: self.config.web.require_token,
            })),
            clock: self.shared.clock.clone(),
            public_url: self.config.server.public_url(address).into(),
            files: self.files.clone(),
            channels: self.channels.clone(),
            experts: self.experts.clone(),
            staff: self.staff.clone(),
            limits: self.limits.clone(),
            proxies: self
                .config
                .server
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::config::parse_proxy(p))
                .collect(),
            unverified_bodies: Arc::new(tokio::sync::Semaphore::new(UNVERIFIED_BODIES_KIB)),
            lifecycle: self.lifecycle.clone(),
            metrics: crate::telemetry::metrics::recorder(),
        });
        let app = http::router(state);
        let housekeeping = tokio::spawn(forget_idle_limits(
            self.limits.clone(),
            self.staff.clone(),
            stop.clone(),
        ));
        let pollers = self.start_channels(&stop, &address);
        info!(%address, database = %redact(&self.config.database.url), "switchboard listening on http://{address}");

        let server_stop = stop.clone();
        let hub = self.shared.hub.clone();
        let options = http::server::ServeOptions {
            max_connections: self.max_connections,
            max_per_address: self.config.server.max_connections_per_address,
            unlimited: self.unlimited_peers(),
            header_timeout: self.config.server.header_timeout,
            body_timeout: self.config.server.body_timeout,
        };
        let mut server = tokio::spawn(http::server::serve(
            listener,
            app,
            async move {
                server_stop.cancelled().await;
                // Ends every event stream, so that open streams do not hold the shutdown.
                hub.close();
            },
            options,
        ));

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                stop.cancel();
                result.context("the HTTP server stopped unexpectedly")?;
            }
        }
        info!("shutting down");
        self.lifecycle.stopping();
        let delay = self.config.server.drain_delay;
        if !delay.is_zero() {
            info!(
                delay_ms = delay.as_millis() as u64,
                "not ready any more; serving a little longer while load balancers notice"
            );
            tokio::time::sleep(delay).await;
        }
        stop.cancel();
        let grace = self.config.server.shutdown_grace;
        if !self.pipeline.drain(grace).await {
            warn!(
                pending = self.pipeline.pending(),
                "replies still running after the grace period; they resume at the next start"
            );
        }
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            warn!("connections still open after the grace period; closing them");
            server.abort();
        }
        // A job finishing its attempt gets the grace period too; what it leaves undone is retried
        // at the next start (its lease runs out). The worker monitor can also miss a stop that
        // comes while it is still starting its workers: never wait for it forever.
        let mut jobs = jobs;
        if tokio::time::timeout(grace, &mut jobs).await.is_err() {
            warn!("background jobs still running after the grace period; stopping them");
            jobs.abort();
        }
        let _ = housekeeping.await;
        for poller in pollers {
            let _ = poller.await;
        }
        if let Some(watch) = watch {
            let _ = watch.await;
        }
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        membership.leave().await;
        self.shared.store.close().await;
        info!("stopped");
        Ok(())
    }
}

impl Gateway {
    /// The queues' handlers and the scheduled tasks of the gateway's services.
    fn background_work(&mut self, address: std::net::SocketAddr) -> Work {
        let Shared {
            store,
            clock,
            hub,
            wakers,
        } = &self.shared;
        let policy = RetryPolicy::new(&self.config.jobs);
        let notifications = Arc::new(Notifications {
            store: store.clone(),
            clock: clock.clone(),
            mailer: self.channels.staff_mailer(),
            http: self.http.clone(),
            config: self.experts_config.clone(),
            public_url: self.config.server.public_url(address),
            policy,
            wake_email: wakers.notify_email.clone(),
            wake_webhook: wakers.notify_webhook.clone(),
        });
        let mut queues: Vec<Arc<dyn QueueHandler>> = vec![
            Arc::new(Deliveries {
                store: store.clone(),
                clock: clock.clone(),
                hub: hub.clone(),
                channels: self.channels.clone(),
                policy,
                wake: wakers.deliver.clone(),
            }),
            Arc::new(MediaDownloads {
                store: store.clone(),
                clock: clock.clone(),
                hub: hub.clone(),
                channels: self.channels.clone(),
                files: self.files.clone(),
                max_bytes: self.config.media.max_bytes,
                policy,
                wake: wakers.fetch_media.clone(),
            }),
            Arc::new(MailQueue(notifications.clone())),
            Arc::new(WebhookQueue(notifications)),
        ];
        if let Some(evaluators) = self.evaluators.take() {
            queues.push(Arc::new(Evaluations {
                store: store.clone(),
                clock: clock.clone(),
                hub: hub.clone(),
                pipeline: self.pipeline.clone(),
                evaluators,
                action: self.config.evaluations.action,
                policy,
                wake: wakers.evaluate.clone(),
            }));
        }
        let mut tasks: Vec<Arc<dyn ScheduledTask>> = vec![
            Arc::new(ExpireLocks {
                store: store.clone(),
                clock: clock.clone(),
                schedule: self.config.routing.lock_sweep_schedule.clone(),
            }),
            Arc::new(Sweep {
                pipeline: self.pipeline.clone(),
                grace: self.config.pipeline.sweep_grace,
                schedule: self.config.pipeline.sweep_schedule.clone(),
            }),
            Arc::new(AssignmentRound {
                experts: self.experts.clone(),
            }),
            Arc::new(UnlinkedFiles::new(
                store.clone(),
                clock.clone(),
                self.files.clone(),
                self.config.web.unused_upload_ttl,
            )),
        ];
        if self.config.retention.enabled() {
            tasks.push(Arc::new(Retention::new(
                store.clone(),
                clock.clone(),
                self.files.clone(),
                self.config.retention.clone(),
            )));
        }
        if QuotaRefresh::needed(store) {
            tasks.push(Arc::new(QuotaRefresh {
                store: store.clone(),
                limits: self.limits.clone(),
                schedule: self.config.quotas.refresh_schedule.clone(),
            }));
        }
        Work { queues, tasks }
    }

    /// The peers a client address's limits never apply to: trusted proxies (every client comes
    /// through them), and this machine when it is exempt from limits.
    fn unlimited_peers(&self) -> Arc<[ipnet::IpNet]> {
        let mut peers: Vec<ipnet::IpNet> = self
            .config
            .server
            .trusted_proxies
            .iter()
            .filter_map(|p| crate::config::parse_proxy(p))
            .collect();
        if self.config.limits.exempt_local {
            peers.extend(
                ["127.0.0.0/8", "::1"]
                    .iter()
                    .filter_map(|p| crate::config::parse_proxy(p)),
            );
        }
        peers.into()
    }

    /// Starts what the channels run beside the server (pollers, webhook registrations).
    fn start_channels(
        &self,
        stop: &CancellationToken,
        address: &std::net::SocketAddr,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let public_url = self.config.server.public_url(*address);
        let exclusive: Arc<dyn switchboard_channel::Exclusive> =
            Arc::new(crate::leases::Leases::new(
                self.shared.store.clone(),
                self.shared.clock.clone(),
                self.config.instance.clone(),
            ));
        self.channels
            .plugins()
            .flat_map(|plugin| {
                let inbox = ChannelInbox {
                    channel: plugin.channel(),
                    pipeline: self.pipeline.clone(),
                    experts: self.experts.clone(),
                    store: self.shared.store.clone(),
                    files: self.files.clone(),
                    max_bytes: self.config.media.max_bytes,
                    clock: self.shared.clock.clone(),
                };
                plugin.start(switchboard_channel::StartContext {
                    inbox: Arc::new(inbox),
                    public_url: public_url.clone(),
                    stop: stop.clone(),
                    exclusive: exclusive.clone(),
                })
            })
            .map(tokio::spawn)
            .collect()
    }
}

/// Memory for webhook bodies read before they are authenticated (a body is signed as a whole, so
/// it has to be read to be checked): 64 MiB, in KiB. Small deliveries never wait for each other;
/// a flood of large forged ones waits here instead of taking the process's memory.
const UNVERIFIED_BODIES_KIB: usize = 64 * 1024;

/// Prunes what the limits remember of clients that went quiet, every minute, until `stop`.
async fn forget_idle_limits(limits: Arc<Limits>, staff: Staff, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                limits.forget_idle();
                staff.forget_idle();
            }
        }
    }
}

/// The HTTP client of the gateway's outbound calls (agents, providers).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            super::redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(super::redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            super::redact("sqlite://switchboard.db"),
            "sqlite://switchboard.db"
        );
    }
}
