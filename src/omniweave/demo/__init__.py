"""The demo world: a simulated retailer (web shop, app, stores) whose customers are touched by
every channel and buy through a known causal model, written as the files a real company would
have (Segment JSON lines, till exports, loyalty, coupons, ...) plus the ground truth.

`omniweave demo` generates it (`generator.generate_world`) and runs it through the collector
and the importers (`runner.run_demo`).
"""
