#include "unit.h"
TEST(todo) {}
UNIT_MAIN(TEST_ENTRY(todo))
