/* test_layout.c: the ABI headers compile as C99 with their offset
 * static_asserts (the asserts themselves are the test). */
#include <xquant/xq_algorithm.h>
#include <xquant/xq_format.h>
#include <xquant/xq_kernel.h>
#include <xquant/xq_loader.h>
#include <xquant/xquant.h>

size_t xq_test_descriptor_size(void) { return sizeof(xq_plugin_descriptor); }
