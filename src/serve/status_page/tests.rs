//! Unit tests of the status page's HTML.
