//! Shared support for the end-to-end scenarios (the scenarios are the `[[test]]` targets).
