//! Unit tests of the status store and its JSON.
