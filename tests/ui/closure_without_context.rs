// The factory takes the instance's context: a closure without it (or with two arguments) is
// not a factory.
use effectively_once::assert_effectively_once;

fn main() {
    assert_effectively_once!(|| async {});
}
