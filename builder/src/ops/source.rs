//! The source op: a base image or `scratch`, a snapshot known at conversion time.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::build::Result;
use crate::graph::{LogSink, Op, OpError, OpKind};
use crate::snapshot::Snapshot;

// Ops
pub(crate) struct SourceOp {
    pub(crate) name: String,
    pub(crate) key: Vec<u8>,
    pub(crate) snapshot: Snapshot,
}

impl Op<Snapshot> for SourceOp {
    fn kind(&self) -> OpKind {
        OpKind::Source
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn key<'a>(&'a self) -> BoxFuture<'a, Result<Vec<u8>, OpError>> {
        async move { Ok(self.key.clone()) }.boxed()
    }
    fn run<'a>(
        &'a self,
        _: &'a [Arc<Snapshot>],
        _: &'a dyn LogSink,
    ) -> BoxFuture<'a, Result<Snapshot, OpError>> {
        async move { Ok(self.snapshot.clone()) }.boxed()
    }
}
