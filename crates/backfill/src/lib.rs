//! The backfill engine: keyed-range batch updates described in job specs, each batch committed
//! together with its progress row so that an interrupted job resumes exactly where it stopped.
