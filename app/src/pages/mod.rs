//! The dashboard's pages.

mod audit;
mod layout;
mod login;
mod not_found;
mod overview;
mod tokens;
mod users;

pub use audit::AuditPage;
pub use layout::Layout;
pub use login::LoginPage;
pub use not_found::NotFound;
pub use overview::OverviewPage;
pub use tokens::TokensPage;
pub use users::UsersPage;
