//! `COPY --link`: a linked layer merged onto its parent.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use crate::build::Result;
use crate::graph::{KeyBuilder, LogSink, Op, OpError, OpKind};
use crate::snapshot::Snapshot;

/// `COPY --link`: the linked layer(s) of its second input on top of its first, with their
/// history entries.
pub(crate) struct MergeOp {
    pub(crate) name: String,
}

impl Op<Snapshot> for MergeOp {
    fn kind(&self) -> OpKind {
        OpKind::Merge
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move { Ok(KeyBuilder::new("merge").finish()) }.boxed()
    }
    fn cacheable(&self) -> bool {
        false
    }
    fn run<'a>(
        &'a self,
        inputs: &'a [Arc<Snapshot>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move {
            let mut s = (*inputs[0]).clone();
            let linked = &inputs[1];
            s.layers.extend(linked.layers.iter().cloned());
            if !s.config["history"].is_array() {
                s.config["history"] = json!([]);
            }
            if let (Some(h), Some(add)) = (
                s.config["history"].as_array_mut(),
                linked.config["history"].as_array(),
            ) {
                h.extend(add.iter().cloned());
            }
            Ok(s)
        }
        .boxed()
    }
}
