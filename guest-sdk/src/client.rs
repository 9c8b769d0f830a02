//! `client!`: typed clients over a node's generated client interfaces, and
//! the argument adapters that let one declaration style serve both async
//! clients (whose generated functions take owned values) and blocking ones
//! (whose generated functions borrow strings, lists and records).

/// Declare a typed client for a service's client interface.
///
/// ```ignore
/// lp_guest::client! {
///     /// A producer, as the consumer sees it.
///     pub struct Producer => lp::examples::producer_client {
///         fn work(context: u64) -> u64;
///         fn reset();                       // returns nothing
///         fn label(name: String) -> String; // or `name: &str`: either works
///     }
/// }
/// // in args: `producers: Vec<Producer>`; then
/// let fut = producers[0].work(7);          // a future: fan out, join later
/// let v = producers[0].work(7).await?;     // the blocking call, in async code
/// ```
///
/// For a `-blocking-client` interface (synchronous client functions, for
/// synchronous code such as a `blocking-lifecycle` run), write `blocking`
/// before the module path; the methods then return the result directly.
///
/// Arguments may be declared owned (`String`, `Vec<T>`, a record) or
/// borrowed (`&str`, `&[T]`, `&Record`) for either kind of client: the
/// macro passes them as the generated function takes them. A method that
/// returns nothing leaves out `-> ...`. Each method forwards to the
/// generated client function, so the compiler checks the declared
/// signatures against the WIT.
#[macro_export]
macro_rules! client {
    ($(#[$meta:meta])* $vis:vis struct $name:ident => blocking $module:path { $($body:tt)* }) => {
        $crate::client!(@struct $(#[$meta])* $vis $name);
        $crate::client!(@methods blocking $name $module; $($body)*);
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident => $module:path { $($body:tt)* }) => {
        $crate::client!(@struct $(#[$meta])* $vis $name);
        $crate::client!(@methods future $name $module; $($body)*);
    };

    // One method at a time, so a malformed one is named in the error.
    (@methods $mode:ident $name:ident $module:path;) => {};
    (@methods $mode:ident $name:ident $module:path;
        $(#[$m:meta])* fn $func:ident ( $($args:tt)* ) -> $ret:ty ; $($rest:tt)*) => {
        $crate::client!(@method $mode $name $module; [$(#[$m])*] $func ( $($args)* ) -> $ret);
        $crate::client!(@methods $mode $name $module; $($rest)*);
    };
    (@methods $mode:ident $name:ident $module:path;
        $(#[$m:meta])* fn $func:ident ( $($args:tt)* ) ; $($rest:tt)*) => {
        $crate::client!(@method $mode $name $module; [$(#[$m])*] $func ( $($args)* ) -> ());
        $crate::client!(@methods $mode $name $module; $($rest)*);
    };
    (@methods $mode:ident $name:ident $module:path; $(#[$m:meta])* async fn $func:ident $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "client!: write `fn ", ::core::stringify!($func), "`, not `async fn`: every method of a client ",
            "returns a future, unless the client is declared `=> blocking`"
        ));
    };
    (@methods $mode:ident $name:ident $module:path; $(#[$m:meta])* pub $($rest:tt)*) => {
        ::core::compile_error!(
            "client!: leave out `pub` before `fn`: every method of a client is public"
        );
    };
    (@methods $mode:ident $name:ident $module:path; $(#[$m:meta])* fn $func:ident $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "client!: cannot read method `", ::core::stringify!($func), "`: write `fn ",
            ::core::stringify!($func), "(arg: Type, ...) -> Ret;`, or `fn ", ::core::stringify!($func),
            "(arg: Type, ...);` when it returns nothing, each ending with `;`"
        ));
    };
    (@methods $mode:ident $name:ident $module:path; $($other:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "client!: expected a method `fn name(arg: Type, ...) -> Ret;`, found `",
            ::core::stringify!($($other)*), "`"
        ));
    };

    (@method blocking $name:ident $module:path; [$(#[$m:meta])*]
        $func:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty) => {
        impl $name {
            $(#[$m])*
            pub fn $func(&self, $($arg: $ty),*) -> ::core::result::Result<$ret, $crate::CallError> {
                use $module as client_module;
                client_module::$func(self.0, $($crate::__client_arg(&$arg)),*)
            }
        }
    };
    (@method future $name:ident $module:path; [$(#[$m:meta])*]
        $func:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty) => {
        impl $name {
            $(#[$m])*
            pub fn $func(&self, $($arg: $ty),*)
                -> impl ::core::future::Future<Output = ::core::result::Result<$ret, $crate::CallError>> + 'static
            {
                use $module as client_module;
                client_module::$func(self.0, $($crate::__client_owned($arg)),*)
            }
        }
    };
    (@method $mode:ident $name:ident $module:path; [$(#[$m:meta])*]
        $func:ident ( $(&)? $(mut)? self $($rest:tt)* ) -> $ret:ty) => {
        ::core::compile_error!(::core::concat!(
            "client!: method `", ::core::stringify!($func), "` takes no `self`: list only the ",
            "service function's arguments (the macro adds `&self`)"
        ));
    };
    (@method $mode:ident $name:ident $module:path; [$(#[$m:meta])*]
        $func:ident ( $($args:tt)* ) -> $ret:ty) => {
        ::core::compile_error!(::core::concat!(
            "client!: the arguments of `", ::core::stringify!($func), "` must be `name: Type` pairs ",
            "separated by commas, found `", ::core::stringify!($($args)*), "`"
        ));
    };

    (@struct $(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis struct $name(pub $crate::Handle);

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::__deserialize_handle(d).map($name)
            }
        }

        impl $name {
            /// The handle this client calls.
            pub fn handle(&self) -> $crate::Handle {
                self.0
            }
        }
    };
}

/// An argument as a blocking client function takes it (`P`): by value when
/// it is `Copy`, else borrowed (`String` as `&str`, `Vec<T>` as `&[T]`).
#[doc(hidden)]
pub trait __ClientArg<'a, P> {
    fn __client_arg(&'a self) -> P;
}

impl<T: Copy> __ClientArg<'_, T> for T {
    fn __client_arg(&self) -> T {
        *self
    }
}

impl<'a, T> __ClientArg<'a, &'a T> for T {
    fn __client_arg(&'a self) -> &'a T {
        self
    }
}

impl<'a> __ClientArg<'a, &'a str> for String {
    fn __client_arg(&'a self) -> &'a str {
        self
    }
}

impl<'a, T> __ClientArg<'a, &'a [T]> for Vec<T> {
    fn __client_arg(&'a self) -> &'a [T] {
        self
    }
}

impl<'a> __ClientArg<'a, Option<&'a str>> for Option<String> {
    fn __client_arg(&'a self) -> Option<&'a str> {
        self.as_deref()
    }
}

impl<'a, T> __ClientArg<'a, Option<&'a [T]>> for Option<Vec<T>> {
    fn __client_arg(&'a self) -> Option<&'a [T]> {
        self.as_deref()
    }
}

#[doc(hidden)]
pub fn __client_arg<'a, A: __ClientArg<'a, P> + ?Sized, P>(arg: &'a A) -> P {
    arg.__client_arg()
}

/// An argument as an async client function takes it (`P`, owned): a
/// borrowed one is copied (`&str` into a `String`, `&[T]` into a `Vec<T>`).
#[doc(hidden)]
pub trait __ClientOwned<P> {
    fn __client_owned(self) -> P;
}

impl<T> __ClientOwned<T> for T {
    fn __client_owned(self) -> T {
        self
    }
}

impl<T: Clone> __ClientOwned<T> for &T {
    fn __client_owned(self) -> T {
        self.clone()
    }
}

impl __ClientOwned<String> for &str {
    fn __client_owned(self) -> String {
        self.to_string()
    }
}

impl<T: Clone> __ClientOwned<Vec<T>> for &[T] {
    fn __client_owned(self) -> Vec<T> {
        self.to_vec()
    }
}

#[doc(hidden)]
pub fn __client_owned<A: __ClientOwned<P>, P>(arg: A) -> P {
    arg.__client_owned()
}
