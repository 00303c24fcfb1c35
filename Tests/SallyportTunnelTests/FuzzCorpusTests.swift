import Foundation
import SallyportFuzzTargets
import Testing

/// Every input the fuzzer kept (`Tests/Fuzz/corpus`, `scripts/fuzz.sh`) runs through its parser in every test
/// run, so a fix for something the fuzzer found stays fixed without libFuzzer.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus").path

    @Test(arguments: FuzzTarget.allCases)
    func corpusReplays(_ target: FuzzTarget) throws {
        let directory = Self.corpus + "/" + target.rawValue
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(files.contains { $0.hasPrefix("seed-") }, "the seeds are missing: sallyport-fuzz --write-seeds config Tests/Fuzz/corpus")
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            data.withUnsafeBytes { target.run($0) }
        }
    }

    @Test func seedsAreWhatThePeersAndExamplesProduce() throws {
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config").path
        for target in FuzzTarget.allCases {
            let seeds = try target.seeds(configDirectory: config)
            #expect(!seeds.isEmpty)
            for (name, data) in seeds {
                let kept = try? Data(contentsOf: URL(fileURLWithPath: Self.corpus + "/" + target.rawValue + "/seed-" + name))
                #expect(kept == data, "\(target.rawValue)/seed-\(name) is stale: sallyport-fuzz --write-seeds config Tests/Fuzz/corpus")
            }
        }
    }
}
