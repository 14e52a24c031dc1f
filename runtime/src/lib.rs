//! hoist-runtime: safe verified unpack, bundles, the executor, containers and volumes.
