// Process groups: layout validation and the single-process groups.
#include <catch2/catch.hpp>

#include "parallel/local_communicator.h"
#include "parallel/process_groups.h"

using namespace vmoe;

TEST_CASE("process groups: layouts are checked with the values named") {
  CHECK_NOTHROW(validate_layout(4, 8, 128, 8));  // Pe 4, 32 images = 4 groups per rank
  CHECK_NOTHROW(validate_layout(8, 2, 128, 8));  // E < P: Pe 2, 4 replicas
  CHECK_NOTHROW(validate_layout(3, 0, 129, 0));  // dense: only the batch split
  CHECK(expert_group_size(8, 4) == 4);
  CHECK(expert_group_size(2, 8) == 2);
  CHECK(expert_group_size(0, 8) == 1);
  REQUIRE_THROWS_WITH(validate_layout(3, 8, 96, 8),
                      Catch::Contains("8 experts (model.moe.num_experts) cannot be split evenly "
                                      "over an expert group of 3 ranks"));
  REQUIRE_THROWS_WITH(validate_layout(6, 4, 96, 8),
                      Catch::Contains("6 ranks cannot form whole expert groups of 4 ranks"));
  REQUIRE_THROWS_WITH(validate_layout(4, 8, 130, 8),
                      Catch::Contains("global batch 130 (data.batch_size) is not divisible by 4"));
  REQUIRE_THROWS_WITH(validate_layout(2, 8, 136, 8),
                      Catch::Contains("68 images per rank, not a whole number of routing groups"));
  // In one process the groups are trivial and every expert is local.
  ProcessGroups g = make_process_groups(std::make_shared<LocalCommunicator>("world"), 8);
  CHECK(g.expert->size() == 1);
  CHECK(g.replica->size() == 1);
  CHECK(g.expert_shard().first == 0);
  CHECK(g.expert_shard().count == 8);
}
