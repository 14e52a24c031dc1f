//! The builder's [`Puller`], in process: a base image is pulled into the local store through
//! the same path as `hoist pull`, with docker's stored credentials.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use hoist_builder::build::Puller;
use hoist_builder::graph::OpError;
use hoist_client::{Endpoints, PullOptions};
use hoist_oci::Reference;
use hoist_storage::images::Platform;

use crate::error::error_chain;
use crate::{EngineError, Host, Result};

/// Pulls base images for a build.
pub struct HostPuller {
    pub host: Arc<Host>,
    pub endpoints: Arc<Endpoints>,
}

impl HostPuller {
    async fn pull_into_store(&self, reference: &Reference, platform: &Platform) -> Result<()> {
        let client = crate::transfer::connect(reference, &self.endpoints, "pull").await?;
        let options = PullOptions {
            platform: platform
                .to_string()
                .parse()
                .map_err(|e| EngineError::Invalid(format!("platform {platform}: {e}")))?,
            ..PullOptions::default()
        };
        self.host
            .pull(&client, reference, &options)
            .await
            .map(|_| ())
    }
}

impl Puller for HostPuller {
    fn pull<'a>(
        &'a self,
        reference: &'a Reference,
        platform: &'a Platform,
    ) -> BoxFuture<'a, std::result::Result<(), OpError>> {
        // The client's pull future is not `Send` to the compiler (a higher-ranked closure,
        // rust-lang/rust#102211): it runs to completion on a blocking thread of the runtime.
        let this = HostPuller {
            host: self.host.clone(),
            endpoints: self.endpoints.clone(),
        };
        let (reference, platform) = (reference.clone(), platform.clone());
        let handle = tokio::runtime::Handle::current();
        async move {
            tokio::task::spawn_blocking(move || {
                handle
                    .block_on(this.pull_into_store(&reference, &platform))
                    .map_err(|e| error_chain(&e))
            })
            .await
            .map_err(|e| OpError::from(format!("pulling a base image: {e}")))?
            .map_err(OpError::from)
        }
        .boxed()
    }
}
