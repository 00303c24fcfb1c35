import Testing

/// Every end-to-end suite runs inside this one, one test at a time: they start real processes, measure
/// time and memory, and must not disturb each other on a small CI machine.
@Suite("End to end", .serialized)
enum EndToEnd {}
