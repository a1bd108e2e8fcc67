set -u
OUT=$OUT/base timeout 300 bash scripts/gpu-engine-check.sh .gpueng/bundle.tar.xz 2>&1 | tail -60
b=$(cat /tmp/gpueng/build-root)/build; export LD_LIBRARY_PATH=$b/lib:/tmp/gpueng/deps
t=$(find $b -name test_paged_engine -type f | head -1)
for i in 1 2 3; do $t --gtest_filter='*Continuous*' 2>&1 | grep -E "seed|near-tie|FAILED|PASSED|differs" | head -20; done
g=$(find $b -name test_decode_graphs -type f | head -1)
for i in 1 2 3; do $g 2>&1 | grep -E "seed|FAILED|PASSED|Failure|rel" | head; done
