// wb_pdl.cuh: programmatic dependent launch (PDL) on sm_90.
//
// A kernel launched with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION may begin while the
// previous kernel on its stream is still running. Two instructions make that safe:
//   pdl_wait()      griddepcontrol.wait: block until every predecessor grid has completed and its
//                   memory is visible. Everything before it must not read the predecessor's output.
//   pdl_trigger()   griddepcontrol.launch_dependents: tell the hardware the dependent grid may be
//                   scheduled now (it still waits in its own pdl_wait for our completion).
// Without the launch attribute both are no-ops, so one kernel serves PDL on and off.
#pragma once

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" :::); }
