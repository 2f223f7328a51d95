// `assert_exactly_once!` needs a verifier that names the output topics.
use effectively_once::{InstanceContext, assert_exactly_once};

async fn summarizer(_ctx: InstanceContext) {}

fn main() {
    assert_exactly_once!(summarizer);
}
