//! Typed names for session attributes.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The name of a session attribute together with the type stored under it,
/// so that a handler cannot read a cart as a user, and a typo in a name is a
/// compile error rather than a silent `None`:
///
/// ```
/// use tessera::Key;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Cart { items: Vec<u64> }
/// const CART: Key<Cart> = Key::new("cart");
/// ```
pub struct Key<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Key<T> {
    /// A key named `name`.
    pub const fn new(name: &'static str) -> Self {
        Self { name, _type: PhantomData }
    }
}

impl<T> Key<T> {
    /// The attribute's name in the store.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Key<T> {}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.name)
    }
}
