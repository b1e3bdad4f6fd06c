//! The dashboard (Leptos). Filled in by issue 2.
