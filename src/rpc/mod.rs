//! The tonic service. Architecture Invariant: this is the only module that knows
//! `tonic::Status`; it maps [`Error`] to status codes in one place.
//!
//! Every handler validates cheaply, then runs the operation on a blocking thread. A streaming
//! RPC takes one of a fixed number of stream slots (or is refused with RESOURCE_EXHAUSTED) and
//! is fed by its blocking producer through [`stream`], which bounds the bytes waiting for the
//! client, ends a stream whose client stops reading, and stops as soon as the client goes.

mod auth;
pub mod convert;
mod limits;

pub use auth::Auth;
pub use limits::StreamLimits;
use limits::{Slot, Slots};

use crate::app::{App, CreateParams, EventQuery};
use crate::error::Error;
use crate::pb;
use crate::pb::simulation_service_server::SimulationService;
use crate::wire::EventBatch;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::InvalidArgument { field, message } => {
                Status::invalid_argument(format!("{field}: {message}"))
            }
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Corrupt(m) => {
                tracing::error!(error = %m, "stored data does not decode");
                Status::data_loss(format!("stored data is corrupt: {m}"))
            }
            Error::Bug(m) => {
                tracing::error!(error = %m, "bug");
                Status::internal(format!(
                    "internal error (a bug in ampsim): {m}; see the server log"
                ))
            }
            other => {
                // Details stay in the server log; clients get the kind of failure only.
                tracing::error!(error = %other, "internal error");
                let kind = match other {
                    Error::Io(_) => "i/o error",
                    _ => "storage error",
                };
                Status::internal(format!("{kind}; see the server log"))
            }
        }
    }
}

/// The `ampsim.v1.SimulationService` implementation.
#[derive(Clone)]
pub struct Service {
    app: Arc<App>,
    limits: StreamLimits,
    slots: Arc<Slots>,
}

impl Service {
    /// A service over the shared app, with the default stream limits.
    pub fn new(app: Arc<App>) -> Self {
        Self::with_limits(app, StreamLimits::default())
    }

    /// A service over the shared app with these stream limits.
    pub fn with_limits(app: Arc<App>, limits: StreamLimits) -> Self {
        Service {
            app,
            limits,
            slots: Slots::new(limits.max_streams.max(1)),
        }
    }

    /// Follows saturation: true while every stream slot is taken (health reports
    /// NOT_SERVING then).
    pub fn saturation(&self) -> tokio::sync::watch::Receiver<bool> {
        self.slots.watch()
    }

    /// A stream slot, or RESOURCE_EXHAUSTED when all are taken.
    #[allow(clippy::result_large_err)]
    fn slot(&self) -> Result<Slot, Status> {
        self.slots.take().ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the server is busy: all {} stream slots are taken (serve --max-streams); retry later",
                self.slots.max()
            ))
        })
    }

    /// [`stream`] with this service's limits, holding `slot` until the producer ends.
    fn stream<T, F>(&self, slot: Slot, produce: F) -> Response<Stream<T>>
    where
        T: prost::Message + Send + 'static,
        F: FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), Error> + Send + 'static,
    {
        stream(self.limits, slot, produce)
    }
}

/// The largest `FileChunk` of ExportParquet: within the 4 MiB a gRPC client accepts by default.
const FILE_CHUNK_BYTES: usize = 1 << 20;

/// Streams what `produce` sends, from a blocking thread: the shape of every streaming RPC.
/// `produce` hands each message to its sink, which returns false once the client has gone
/// (then `produce` should stop); an error it returns, or a panic, ends the stream with that
/// status. The messages waiting for the client hold at most `limits.buffer_bytes` (the sink
/// waits for room); a client that leaves the stream full for `limits.send_timeout` gets
/// ABORTED. `slot` is given back when the producer ends.
fn stream<T, F>(limits: StreamLimits, slot: Slot, produce: F) -> Response<Stream<T>>
where
    T: prost::Message + Send + 'static,
    F: FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), Error> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<(Result<T, Status>, Option<OwnedSemaphorePermit>)>();
    let room = Arc::new(Semaphore::new(limits.buffer_bytes.max(1)));
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut stalled = false;
        let mut sink = |item: T| {
            let bytes = item.encoded_len().clamp(1, limits.buffer_bytes.max(1));
            let wait = room.clone().acquire_many_owned(bytes as u32);
            match runtime.block_on(tokio::time::timeout(limits.send_timeout, wait)) {
                Ok(Ok(permit)) => tx.send((Ok(item), Some(permit))).is_ok(),
                Ok(Err(_)) => false,
                Err(_) => {
                    stalled = true;
                    false
                }
            }
        };
        // A panic behind a stream must end it with an error, never with OK after a short
        // read: the panic is caught here and sent as INTERNAL.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(&mut sink)))
            .unwrap_or_else(|p| Err(Error::Bug(panic_message(&*p))));
        let res = match res {
            Ok(()) if stalled => Err(Error::Aborted(format!(
                "the client read nothing for {} s, so the stream was ended (serve --stream-send-timeout-secs)",
                limits.send_timeout.as_secs_f64()
            ))),
            other => other,
        };
        if let Err(e) = res {
            let _ = tx.send((Err(e.into()), None));
        }
    });
    // A message's bytes count against the stream's room until the client takes it.
    let rx = UnboundedReceiverStream::new(rx).map(|(item, permit)| {
        drop(permit);
        item
    });
    Response::new(Box::pin(rx))
}

/// What a caught panic said.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let text = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("the worker panicked: {text}")
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res.map_err(Status::from),
        Err(e) if e.is_panic() => Err(Error::Bug(panic_message(&*e.into_panic())).into()),
        Err(e) => Err(Error::Bug(format!("the worker was cancelled: {e}")).into()),
    }
}

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SimulationService for Service {
    #[tracing::instrument(skip_all, fields(simulation = %req.get_ref().simulation_id))]
    async fn create_simulation(
        &self,
        req: Request<pb::CreateSimulationRequest>,
    ) -> Result<Response<pb::Simulation>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let row = blocking(move || {
            app.create(&CreateParams {
                simulation_id: r.simulation_id,
                seed: r.seed,
                start_date: r.start_date,
                population_scale: r.population_scale,
                scenario_toml: r.scenario_toml,
            })
        })
        .await?;
        tracing::info!(simulation = %row.id, "created");
        Ok(Response::new(convert::simulation(&row, false)))
    }

    async fn get_simulation(
        &self,
        req: Request<pb::GetSimulationRequest>,
    ) -> Result<Response<pb::Simulation>, Status> {
        let id = req.into_inner().simulation_id;
        let app = self.app.clone();
        let (row, busy) = blocking(move || {
            let row = app.get(&id)?;
            let busy = app.is_generating(&row.id);
            Ok((row, busy))
        })
        .await?;
        Ok(Response::new(convert::simulation(&row, busy)))
    }

    async fn list_simulations(
        &self,
        _req: Request<pb::ListSimulationsRequest>,
    ) -> Result<Response<pb::ListSimulationsResponse>, Status> {
        let app = self.app.clone();
        let sims = blocking(move || {
            Ok(app
                .list()?
                .iter()
                .map(|r| convert::simulation(r, app.is_generating(&r.id)))
                .collect())
        })
        .await?;
        Ok(Response::new(pb::ListSimulationsResponse {
            simulations: sims,
        }))
    }

    #[tracing::instrument(skip_all, fields(simulation = %req.get_ref().simulation_id))]
    async fn delete_simulation(
        &self,
        req: Request<pb::DeleteSimulationRequest>,
    ) -> Result<Response<pb::DeleteSimulationResponse>, Status> {
        let id = req.into_inner().simulation_id;
        let app = self.app.clone();
        blocking(move || app.delete(&id)).await?;
        tracing::info!("deleted");
        Ok(Response::new(pb::DeleteSimulationResponse {
            deleted: true,
        }))
    }

    type GenerateDaysStream = Stream<pb::DayProgress>;

    #[tracing::instrument(skip_all, fields(simulation = %req.get_ref().simulation_id, days = req.get_ref().days))]
    async fn generate_days(
        &self,
        req: Request<pb::GenerateDaysRequest>,
    ) -> Result<Response<Self::GenerateDaysStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let slot = self.slot()?;
        let job = blocking(move || app.prepare_generate(&r.simulation_id, r.days)).await?;
        Ok(self.stream(slot, move |sink| {
            job.run(|d| sink(convert::day(&d))).map(drop)
        }))
    }

    type StreamEventsStream = Stream<EventBatch>;

    async fn stream_events(
        &self,
        req: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let id = r.simulation_id.clone();
        let q = EventQuery {
            from_date: r.from_date,
            to_date: r.to_date,
            event_types: r.event_types,
            user_id: r.user_id,
            device_id: r.device_id,
            generate_missing: r.generate_missing,
            batch_size: r.batch_size,
            user_properties: user_properties_view(r.user_properties)?,
        };
        let slot = self.slot()?;
        let events = blocking(move || app.prepare_stream(&id, &q)).await?;
        Ok(self.stream(slot, move |sink| events.run(sink)))
    }

    type ExportParquetStream = Stream<pb::FileChunk>;

    async fn export_parquet(
        &self,
        req: Request<pb::ExportParquetRequest>,
    ) -> Result<Response<Self::ExportParquetStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let id = r.simulation_id.clone();
        let q = EventQuery {
            from_date: r.from_date,
            to_date: r.to_date,
            generate_missing: r.generate_missing,
            ..EventQuery::default()
        };
        let slot = self.slot()?;
        let days = blocking(move || app.prepare_stream(&id, &q)).await?;
        Ok(self.stream(slot, move |sink| {
            days.run_parquet(&r.simulation_id, |day| {
                convert::file_chunks(day, FILE_CHUNK_BYTES).all(&mut *sink)
            })
        }))
    }

    type ExportLabelsStream = Stream<pb::FileChunk>;

    async fn export_labels(
        &self,
        req: Request<pb::ExportLabelsRequest>,
    ) -> Result<Response<Self::ExportLabelsStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let slot = self.slot()?;
        let labels = blocking(move || app.prepare_labels(&r.simulation_id)).await?;
        let date = labels.as_of().format("%Y-%m-%d").to_string();
        Ok(self.stream(slot, move |sink| {
            labels.run(FILE_CHUNK_BYTES, |p| {
                sink(pb::FileChunk {
                    date: date.clone(),
                    data: p.data.into(),
                    last: p.last,
                    events: p.users,
                    size: p.size,
                })
            })
        }))
    }

    type GetUserJourneyStream = Stream<pb::JourneyItem>;

    async fn get_user_journey(
        &self,
        req: Request<pb::GetUserJourneyRequest>,
    ) -> Result<Response<Self::GetUserJourneyStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let one_user = !r.user_id.is_empty() || !r.device_id.is_empty();
        if !r.company.is_empty() && one_user {
            return Err(Error::invalid(
                "company",
                "give company (an account) or user_id / device_id (one user), not both",
            )
            .into());
        }
        let slot = self.slot()?;
        let (engine, records, summaries) = blocking(move || {
            if r.company.is_empty() {
                app.journey(&r.simulation_id, &r.user_id, &r.device_id)
                    .map(|(e, rec, s)| (e, rec, vec![s]))
            } else {
                app.account_journey(&r.simulation_id, &r.company)
            }
        })
        .await?;
        Ok(self.stream(slot, move |sink| {
            let events = engine.render_sorted(&records);
            for batch in events.chunks(1000) {
                let item = pb::journey_item::Item::Events(EventBatch::encode(batch));
                if !sink(pb::JourneyItem { item: Some(item) }) {
                    return Ok(());
                }
            }
            for summary in &summaries {
                let item =
                    pb::journey_item::Item::Summary(convert::journey_summary(&engine, summary));
                if !sink(pb::JourneyItem { item: Some(item) }) {
                    return Ok(());
                }
            }
            Ok(())
        }))
    }

    type QueryCohortStream = Stream<pb::CohortItem>;

    async fn query_cohort(
        &self,
        req: Request<pb::QueryCohortRequest>,
    ) -> Result<Response<Self::QueryCohortStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let params = crate::query::CohortParams {
            first_seen_from: r.first_seen_from,
            first_seen_to: r.first_seen_to,
            source: r.source,
            medium: r.medium,
            campaign: r.campaign,
            identified: r.identified,
            form_type: r.form_type,
            trial_path: r.trial_path,
            trial_outcome: r.trial_outcome,
            product_sku: r.product_sku,
            min_sessions: r.min_sessions,
            max_sessions: r.max_sessions,
            company: r.company,
            company_size_band: r.company_size_band,
            plan: r.plan,
            lifecycle_stage: r.lifecycle_stage,
        };
        let id = r.simulation_id;
        let max = r.max_members;
        let slot = self.slot()?;
        let (engine, sim, agg) = blocking(move || app.cohort(&id, &params, max)).await?;
        Ok(self.stream(slot, move |sink| {
            let (members, agg) = agg.into_members();
            for chunk in members.chunks(1000) {
                let batch = chunk.iter().map(|m| convert::member(&engine, m)).collect();
                let item = pb::cohort_item::Item::Members(pb::CohortMembers { members: batch });
                if !sink(pb::CohortItem { item: Some(item) }) {
                    return Ok(());
                }
            }
            let item = pb::cohort_item::Item::Summary(convert::cohort_summary(&engine, &sim, &agg));
            sink(pb::CohortItem { item: Some(item) });
            Ok(())
        }))
    }

    async fn get_report(
        &self,
        req: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let id = req.into_inner().simulation_id;
        let app = self.app.clone();
        let report = blocking(move || app.report(&id)).await?;
        Ok(Response::new(convert::report(&report)))
    }
}

/// The user properties view of a StreamEvents request.
fn user_properties_view(v: i32) -> Result<ampsim_engine::UserPropertiesView, Status> {
    use ampsim_engine::UserPropertiesView;
    match pb::UserPropertiesView::try_from(v) {
        Ok(pb::UserPropertiesView::Sent) => Ok(UserPropertiesView::Sent),
        Ok(pb::UserPropertiesView::Stored) => Ok(UserPropertiesView::Stored),
        Err(_) => Err(Error::invalid(
            "user_properties",
            format!("{v} is not a UserPropertiesView (0 = SENT, 1 = STORED)"),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic behind a stream ends it with INTERNAL after what was sent, never with OK.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_producer_ends_the_stream_with_internal() {
        let slots = Slots::new(1);
        let slot = slots.take().unwrap();
        assert!(slots.take().is_none(), "one slot");
        let mut s = stream(
            StreamLimits::default(),
            slot,
            |sink: &mut dyn FnMut(pb::DayProgress) -> bool| {
                sink(pb::DayProgress {
                    day_index: 1,
                    ..Default::default()
                });
                sink(pb::DayProgress {
                    day_index: 2,
                    ..Default::default()
                });
                panic!("boom");
            },
        )
        .into_inner();
        assert_eq!(s.next().await.unwrap().unwrap().day_index, 1);
        assert_eq!(s.next().await.unwrap().unwrap().day_index, 2);
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("boom"), "{e:?}");
        assert!(s.next().await.is_none());
        assert!(slots.take().is_some(), "the slot came back");
        let e = blocking(|| -> Result<(), Error> { panic!("bang") })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("bang"), "{e:?}");
    }
}
