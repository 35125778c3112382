//! The protocol layer: what travels on the wire and how. The generated
//! protobuf types of `schema/` and the checks every side makes of them,
//! typed errors, length-prefixed frames, the framed connection's reading
//! and writing halves, the multiplexed requesting side, and one-line
//! descriptions for `dump`. It knows nothing of replicas, rings or disks;
//! it uses only the support layer (`ops`).

pub mod checks;
pub mod describe;
pub mod error;
pub mod frame;
pub mod framed;
pub mod mux;
pub mod proto;
