// <pipepool/pipepool.hpp>: everything a user of the pool needs. Start with pool.hpp.
#pragma once

#include "pipepool/async_result.hpp"
#include "pipepool/codec.hpp"
#include "pipepool/errors.hpp"
#include "pipepool/options.hpp"
#include "pipepool/pool.hpp"
#include "pipepool/random.hpp"
#include "pipepool/remote_exceptions.hpp"
#include "pipepool/scheduler.hpp"
#include "pipepool/strategy.hpp"
