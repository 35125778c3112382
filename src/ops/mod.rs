//! The support layer every other layer may use, and that uses none of
//! them: the runtime seam (every async-std call goes through `rt`),
//! logging, the clean stop, the memory budget, the shared secret, what the
//! process costs (CPU time, resident memory), and the process's exit codes.

pub mod budget;
pub mod deadline;
pub mod exit;
pub mod lock;
pub mod logging;
pub mod net;
pub mod process;
pub mod rt;
pub mod secret;
pub mod shutdown;
