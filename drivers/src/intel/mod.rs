//! Intel PMDs on one advanced-descriptor core: `ring` holds the RX/TX rings the 82576
//! and the 82599 share; `igb` is the 82576 PMD.

pub mod igb;
pub mod ring;
