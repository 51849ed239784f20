//! The tonic service. Architecture Invariant: this is the only module that knows
//! `tonic::Status`; it maps [`Error`] to status codes in one place.
//!
//! Every handler validates cheaply, then runs the operation on a blocking thread. Streams are
//! a bounded channel (32 messages) fed by the blocking producer, which stops as soon as a send
//! fails because the client went away.

pub mod convert;

use crate::app::{App, CreateParams, EventQuery};
use crate::error::Error;
use crate::pb;
use crate::pb::simulation_service_server::SimulationService;
use crate::wire::EventBatch;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Messages buffered per stream before the producer waits for the client.
const STREAM_BUFFER: usize = 32;

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
            other => {
                // Details stay in the server log; clients get the kind of failure only.
                tracing::error!(error = %other, "internal error");
                let kind = match other {
                    Error::Corrupt(_) => "stored data is corrupt",
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
}

impl Service {
    /// A service over the shared app.
    pub fn new(app: Arc<App>) -> Self {
        Service { app }
    }
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(Status::from)
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

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
        let job = blocking(move || app.prepare_generate(&r.simulation_id, r.days)).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            let res = job.run(|d| tx.blocking_send(Ok(convert::day(&d))).is_ok());
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
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
        };
        let stream = blocking(move || app.prepare_stream(&id, &q)).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            let res = stream.run(|batch| tx.blocking_send(Ok(batch)).is_ok());
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type GetUserJourneyStream = Stream<pb::JourneyItem>;

    async fn get_user_journey(
        &self,
        req: Request<pb::GetUserJourneyRequest>,
    ) -> Result<Response<Self::GetUserJourneyStream>, Status> {
        let r = req.into_inner();
        let app = self.app.clone();
        let (engine, records, summary) =
            blocking(move || app.journey(&r.simulation_id, &r.user_id, &r.device_id)).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            let events = engine.render_sorted(&records);
            for batch in events.chunks(1000) {
                let item = pb::journey_item::Item::Events(EventBatch::encode(batch));
                if tx
                    .blocking_send(Ok(pb::JourneyItem { item: Some(item) }))
                    .is_err()
                {
                    return;
                }
            }
            let item = pb::journey_item::Item::Summary(convert::journey_summary(&engine, &summary));
            let _ = tx.blocking_send(Ok(pb::JourneyItem { item: Some(item) }));
        });
        Ok(Response::new(ReceiverStream::new(rx)))
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
        };
        let id = r.simulation_id;
        let max = r.max_members;
        let (engine, sim, agg) = blocking(move || app.cohort(&id, &params, max)).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::task::spawn_blocking(move || {
            let (members, agg) = agg.into_members();
            for chunk in members.chunks(1000) {
                let batch = chunk.iter().map(|m| convert::member(&engine, m)).collect();
                let item = pb::cohort_item::Item::Members(pb::CohortMembers { members: batch });
                if tx
                    .blocking_send(Ok(pb::CohortItem { item: Some(item) }))
                    .is_err()
                {
                    return;
                }
            }
            let item = pb::cohort_item::Item::Summary(convert::cohort_summary(&engine, &sim, &agg));
            let _ = tx.blocking_send(Ok(pb::CohortItem { item: Some(item) }));
        });
        Ok(Response::new(ReceiverStream::new(rx)))
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
