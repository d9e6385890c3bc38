//! Benchmarks (`settle bench polling`). Filled in below.
