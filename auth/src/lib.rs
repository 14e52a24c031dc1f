//! hoist-auth: identities, organisations, teams, grants, password hashing and tokens. No HTTP.
