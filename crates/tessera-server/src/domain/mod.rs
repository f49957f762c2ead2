//! Values the service accepts only once they are known to be valid.

pub mod new_user;
pub mod otp_code;
pub mod password;
pub mod telephone;

pub use new_user::{Gender, NewUser, UserName};
pub use otp_code::OtpCode;
pub use password::Password;
pub use telephone::Telephone;
