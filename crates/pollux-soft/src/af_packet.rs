//! af_packet
