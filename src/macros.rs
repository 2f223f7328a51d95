//! The assertions users call: thin macros over [`check`](crate::check).

/// Asserts that a consumer performs each event's effect exactly once under every generated
/// crash, failure and rebalance; panics with the minimal counterexample otherwise.
///
/// `assert_effectively_once!(factory)` or `assert_effectively_once!(factory, &verifier)`:
/// `factory` starts one consumer instance from an [`InstanceContext`](crate::InstanceContext)
/// (see [`Simulation::run`](crate::Simulation::run)); the optional [`Verifier`](crate::Verifier)
/// sets the cases, the event counts, the group shape, the fault kinds and the seed. Failing
/// cases are saved by proptest's failure persistence beside the test and replay first.
#[macro_export]
macro_rules! assert_effectively_once {
    ($factory:expr $(,)?) => {
        $crate::assert_effectively_once!($factory, &$crate::Verifier::default())
    };
    ($factory:expr, $verifier:expr $(,)?) => {
        $crate::_macro_support::assert_semantics(
            $crate::Semantics::EffectivelyOnce,
            $verifier,
            $factory,
            ::core::file!(),
        )
    };
}

/// Asserts that a consumer performs each event's effect at least once (duplicates allowed);
/// panics with the minimal counterexample otherwise. Arguments as
/// [`assert_effectively_once!`].
#[macro_export]
macro_rules! assert_at_least_once {
    ($factory:expr $(,)?) => {
        $crate::assert_at_least_once!($factory, &$crate::Verifier::default())
    };
    ($factory:expr, $verifier:expr $(,)?) => {
        $crate::_macro_support::assert_semantics(
            $crate::Semantics::AtLeastOnce,
            $verifier,
            $factory,
            ::core::file!(),
        )
    };
}

/// Asserts that a consumer performs each event's effect at most once (losses allowed); panics
/// with the minimal counterexample otherwise. Arguments as [`assert_effectively_once!`].
#[macro_export]
macro_rules! assert_at_most_once {
    ($factory:expr $(,)?) => {
        $crate::assert_at_most_once!($factory, &$crate::Verifier::default())
    };
    ($factory:expr, $verifier:expr $(,)?) => {
        $crate::_macro_support::assert_semantics(
            $crate::Semantics::AtMostOnce,
            $verifier,
            $factory,
            ::core::file!(),
        )
    };
}

/// Asserts that a consume-transform-produce pipeline commits each input event's outputs
/// exactly once on its output topics, with the input offsets committed if and only if the
/// outputs are; panics with the minimal counterexample otherwise. The verifier must name the
/// output topics ([`Verifier::output_topic`](crate::Verifier::output_topic)); arguments
/// otherwise as [`assert_effectively_once!`].
#[macro_export]
macro_rules! assert_exactly_once {
    // Without a verifier there are no output topics to read: say so rather than "unexpected end
    // of macro invocation".
    ($factory:expr $(,)?) => {
        ::core::compile_error!(
            "assert_exactly_once! needs a verifier that names the output topics: \
             `assert_exactly_once!(factory, &verifier)` after `verifier.output_topic(...)`"
        )
    };
    ($factory:expr, $verifier:expr $(,)?) => {
        $crate::_macro_support::assert_semantics(
            $crate::Semantics::ExactlyOnce,
            $verifier,
            $factory,
            ::core::file!(),
        )
    };
}
