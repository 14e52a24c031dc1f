//! hoist-builder: Dockerfile frontend, op graph, cached solver and layer exporters.
